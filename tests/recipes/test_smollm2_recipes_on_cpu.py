"""Every recipe (SFT, RM, DPO, PPO, GRPO, DAPO) for a few steps on a real chat model,
SmolLM2-135M-Instruct (the `smollm2` fixture), through real Ray actors, on public-format rows
(GSM8K and HH-RLHF: the first rows of the sample data when present, rows of the same format
otherwise). Each run is watched from its own loop or task (a subclass that records what passes
through it), and checked for: finite losses; moved weights; prompts tokenised exactly as the
tokenizer's chat template renders them; sampling (RL) that stops at <|im_end|>, and training
answers (SFT, RM, DPO) closed by it; and a saved model that plain transformers loads and that
gives the trainer's log-probs (the reward model: its scores)."""

from __future__ import annotations

import pytest
import ray
import smollm2_checks as check

from rlhf.config import DPOConfig, PPOConfig, RLConfig, RMConfig, SFTConfig, load_config
from rlhf.data.formats import parse_hh
from rlhf.data.sequences import pad_batch
from rlhf.loops.ppo import PPOLoop
from rlhf.loops.rl import RLLoop
from rlhf.loops.rl_run import run_rl
from rlhf.loops.supervised import run_supervised
from rlhf.loops.supervised_tasks import DPOTask, RewardModelTask, SFTTask
from rlhf.models import load_tokenizer
from rlhf.recipes import dapo, dpo, grpo, ppo, rm, sft

pytestmark = [pytest.mark.real_model, pytest.mark.slow, pytest.mark.timeout(900),
              pytest.mark.usefixtures("ray_local")]
TOL = 1e-3  # float32 on both sides; the trainer scores packed rows, transformers one row at a time
MAX_NEW = 16
RL_RECIPES = {"grpo": (grpo.grpo_defaults, RLConfig, RLLoop), "dapo": (dapo.dapo_defaults, RLConfig, RLLoop),
              "ppo": (ppo.ppo_defaults, PPOConfig, PPOLoop)}


def _watching_loop(base: type, seen: dict, fixed: dict) -> type:
    class Watched(base):
        def collect(self):
            batch, scores, metrics = super().collect()
            seen["batches"].append(batch)
            return batch, scores, metrics

        def evaluate(self):
            if self.step_idx == self.cfg.run.steps:  # the final weights, just before they are saved
                seen["trainer_logprobs"] = self.old_logprobs(fixed)
            return super().evaluate()

    return Watched


def _watching_task(base: type, seen: dict, score) -> type:
    class Watched(base):
        def train_step(self, items):
            seen["items"] += items
            return super().train_step(items)

        def save(self, path):
            seen["trainer_scores"] = ray.get(score(self.trainers.actors[0]))
            super().save(path)

    return Watched


def _gsm8k_files(tmp_path, shared) -> list[str]:
    path = check.write_jsonl(tmp_path / "gsm8k.jsonl", check.gsm8k_rows(shared, 2))
    return [f"data.train={path}", f"data.eval={path}", "data.prompt_key=question"]


def _common(smollm2, tmp_path, name: str, steps: int) -> list[str]:
    return [f"model.path={smollm2}", f"run.output_dir={tmp_path}", f"run.name={name}", f"run.steps={steps}",
            "run.eval_every=0", "run.progress=false", "run.torch_threads=1", "data.num_eval=2"]


@pytest.mark.parametrize("recipe", sorted(RL_RECIPES))
def test_rl_recipe_on_smollm2(recipe, smollm2, tmp_path, shared_data_or_none):
    defaults, tree, loop = RL_RECIPES[recipe]
    # a dense reward beside math_verify (which a 135M model rarely satisfies): the share of digits,
    # different for almost any two samples, so every group has a learning signal
    digits = tmp_path / "digits.py"
    digits.write_text("def digits(prompt, completion, **_):\n"
                      "    return sum(c.isdigit() for c in completion) / max(1, len(completion))\n")
    rows = check.gsm8k_rows(shared_data_or_none, 2)
    cfg = load_config(tree, defaults(), _common(smollm2, tmp_path, recipe, 2) + _gsm8k_files(
        tmp_path, shared_data_or_none) + [
        "warmstart.steps=0", f"reward.fns=[math_verify,{digits}:digits]", "trainer.lr=1e-5",
        "rollout.n=2", f"rollout.prompts_per_step={len(rows) // 2}", f"rollout.gen_prompts={len(rows) // 2}",
        f"rollout.max_new_tokens={MAX_NEW}", "algorithm.overlong.cache_len=4"]
        + (["critic.lr=1e-4"] if recipe == "ppo" else []))
    tok = load_tokenizer(str(smollm2))
    seen, fixed = {"batches": []}, check.fixed_batch(tok)
    summary = run_rl(cfg, recipe, loop_cls=_watching_loop(loop, seen, fixed))

    run_dir = tmp_path / recipe
    steps = [r for r in check.records(run_dir) if "actor/pg_loss" in r]
    assert len(steps) == 2
    check.assert_finite([r["actor/pg_loss"] for r in steps] + [r["reward/mean"] for r in steps], "loss, reward")
    if recipe == "ppo":
        check.assert_finite([r["critic/vf_loss"] for r in steps], "value loss")
    check.assert_weights_changed(smollm2, run_dir / "policy")

    expected = {tuple(check.chat_prompt_ids(tok, check.user(r["question"]))) for r in rows}
    rows_seen = [row for batch in seen["batches"] for row in check.split_rl_batch(batch)]
    assert {tuple(p) for p, _ in rows_seen} <= expected
    end_id = tok.convert_tokens_to_ids("<|im_end|>")
    finished = check.assert_stops_at_end_of_turn([r for _, r in rows_seen], MAX_NEW, end_id)
    assert finished > 0, "no sampled response ended within max_new_tokens: the stop check saw nothing"

    mask = fixed["response_mask_BR"] > 0
    saved = check.saved_policy_logprobs(run_dir / "policy", fixed)
    assert (saved - seen["trainer_logprobs"]).abs()[mask].max() < TOL
    assert summary["policy_path"] == str(run_dir / "policy")


def _supervised(recipe: str, tree, defaults, task, score, args: list[str], smollm2, tmp_path) -> tuple[dict, dict]:
    """Three steps (the first two of DeepSpeed's schedule have a learning rate of 0): the summary and
    what the watched task saw."""
    seen = {"items": []}
    cfg = load_config(tree, defaults, _common(smollm2, tmp_path, recipe, 3) + [
        "trainer.batch_size=2", "trainer.micro_batch_size=2", "trainer.lr=1e-5", "trainer.warmup_steps=0"] + args)
    summary = run_supervised(cfg, _watching_task(task, seen, score)())
    train = [r for r in check.records(tmp_path / recipe) if "train/loss" in r]
    assert len(train) == 3
    check.assert_finite([r["train/loss"] for r in train], "train/loss")
    assert all(r["train/skipped_steps"] == 0 for r in train)
    return summary, seen


def _assert_chat_examples(examples: list, expected_prompts: set, end_id: int) -> None:
    """Each example is a chat-template prompt, then the answer closed by the end-of-turn token."""
    assert examples
    for ids, n_prompt in examples:
        assert tuple(ids[:n_prompt]) in expected_prompts
        assert ids[-1] == end_id and end_id not in ids[n_prompt:-1]


def test_sft_on_smollm2(smollm2, tmp_path, shared_data_or_none):
    tok = load_tokenizer(str(smollm2))
    fixed = check.fixed_batch(tok)
    summary, seen = _supervised("sft", SFTConfig, sft.sft_defaults(), SFTTask,
                                lambda trainer: trainer.logprobs.remote(fixed), _gsm8k_files(
                                    tmp_path, shared_data_or_none) + ["data.response_key=answer",
                                                                      "eval.max_new_tokens=8"], smollm2, tmp_path)
    rows = check.gsm8k_rows(shared_data_or_none, 2)
    expected = {tuple(check.chat_prompt_ids(tok, check.user(r["question"]))) for r in rows}
    _assert_chat_examples(seen["items"], expected, tok.convert_tokens_to_ids("<|im_end|>"))
    policy = tmp_path / "sft" / "policy"
    check.assert_weights_changed(smollm2, policy)
    mask = fixed["response_mask_BR"] > 0
    assert (check.saved_policy_logprobs(policy, fixed) - seen["trainer_scores"]).abs()[mask].max() < TOL
    assert summary["policy_path"] == str(policy)


def _hh(tmp_path, shared, tok) -> tuple[list[str], set]:
    rows = check.hh_rows(shared, 4)
    path = check.write_jsonl(tmp_path / "hh.jsonl", rows)
    prompts = {tuple(check.chat_prompt_ids(tok, parse_hh(r["chosen"])[:-1])) for r in rows}
    return [f"data.train={path}", f"data.eval={path}", "warmstart.steps=0"], prompts


def test_reward_model_on_smollm2(smollm2, tmp_path, shared_data_or_none):
    tok = load_tokenizer(str(smollm2))
    args, prompts = _hh(tmp_path, shared_data_or_none, tok)
    fixed = check.fixed_examples(tok)
    summary, seen = _supervised("rm", RMConfig, rm.rm_defaults(), RewardModelTask,
                                lambda trainer: trainer.rewards.remote(pad_batch(fixed, tok.pad_token_id)),
                                args + ["trainer.packing=false"], smollm2, tmp_path)
    end_id = tok.convert_tokens_to_ids("<|im_end|>")
    _assert_chat_examples([ex for pair in seen["items"] for ex in pair], prompts, end_id)
    saved = tmp_path / "rm" / "reward_model"
    check.assert_weights_changed(smollm2, saved)
    scores = check.saved_reward_model_scores(saved, [ids for ids, _ in fixed])
    assert (scores - seen["trainer_scores"]).abs().max() < TOL
    assert summary["reward_model_path"] == str(saved)


def test_dpo_on_smollm2(smollm2, tmp_path, shared_data_or_none):
    tok = load_tokenizer(str(smollm2))
    args, prompts = _hh(tmp_path, shared_data_or_none, tok)
    fixed = check.fixed_batch(tok)
    summary, seen = _supervised("dpo", DPOConfig, dpo.dpo_defaults(), DPOTask,
                                lambda trainer: trainer.logprobs.remote(fixed), args, smollm2, tmp_path)
    end_id = tok.convert_tokens_to_ids("<|im_end|>")
    _assert_chat_examples([ex for pair in seen["items"] for ex in pair], prompts, end_id)
    policy = tmp_path / "dpo" / "policy"
    check.assert_weights_changed(smollm2, policy)
    mask = fixed["response_mask_BR"] > 0
    assert (check.saved_policy_logprobs(policy, fixed) - seen["trainer_scores"]).abs()[mask].max() < TOL
    assert summary["policy_path"] == str(policy)
