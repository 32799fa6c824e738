"""End-to-end runs of the RL recipes through real Ray actors on CPU (tiny model, seconds each)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhf.recipes import dapo, grpo

SMALL = ["warmstart.steps=30", "data.num_eval=24", "rollout.prompts_per_step=4", "rollout.gen_prompts=4",
         "rollout.n=4", "rollout.max_new_tokens=12", "run.progress=false", "run.eval_every=0"]


pytestmark = pytest.mark.usefixtures("ray_local")


def _weights(path: Path) -> dict:
    return load_file(str(path / "model.safetensors"))


@pytest.mark.slow
def test_dapo_end_to_end(tmp_path):
    summary = dapo.main(SMALL + ["run.steps=3", f"run.output_dir={tmp_path}", "run.name=d", "run.eval_samples=4",
                                 "run.eval_pass_k=[1,4]"])
    run = tmp_path / "d"
    assert set(summary) >= {"accuracy_before", "accuracy_after", "steps", "wall_s"}
    assert json.loads((run / "summary.json").read_text())["steps"] == 3
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "reward/mean" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for key in ("actor/pg_loss", "actor/clipfrac_high", "dynamic_sampling/gen_batches",
                "dynamic_sampling/filtered_frac", "timing/generate_s", "timing/reward_s", "timing/update_s",
                "timing/step_s", "sync/seconds",
                "reward/math_verify/mean", "reward/math_verify/format_rate", "reward/overlong_penalty"):
        assert key in steps[-1], key
    assert "actor/kl_loss" not in steps[-1]  # DAPO has no KL term
    evals = [r for r in records if "eval/accuracy" in r]
    assert len(evals) == 2  # before and after
    for r in evals:  # binary scores: pass@1 is the mean score; pass@k cannot fall as k grows
        assert r["eval/pass@1"] == pytest.approx(r["eval/avg@4"]) and r["eval/pass@4"] >= r["eval/pass@1"]
        # the one eval reward's own metrics on the greedy completions: its mean is the accuracy
        assert r["eval/math_verify/mean"] == pytest.approx(r["eval/accuracy"])
        assert 0.0 <= r["eval/math_verify/format_rate"] <= r["eval/math_verify/has_answer"] <= 1.0
    assert (run / "curves.png").stat().st_size > 1000
    before, after = _weights(Path(summary["model_path"])), _weights(run / "policy")
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before), f"unchanged: {set(before) - set(changed)}"


@pytest.mark.slow
def test_split_placement_with_broadcast_sync_from_a_zero3_lora_trainer(tmp_path):
    """The split-GPU layout on CPU bundles: trainers (ZeRO-3, LoRA) and the reference share
    bundles, the generator has its own, weights travel by the broadcast group (gloo here)."""
    rewards = tmp_path / "length_reward.py"  # a dense signal, so that every group has one
    rewards.write_text("def length(prompt, completion, response_length, **_):\n    return response_length / 12\n")
    summary = grpo.main(SMALL + [f"reward.fns=[{rewards}:length]", "run.steps=2", f"run.output_dir={tmp_path}",
                                 "run.name=s", "placement.mode=split", "trainer.num_workers=2", "trainer.zero_stage=3", "trainer.cpus_per_worker=0.5",
                                 "generator.cpus_per_worker=0.5", "model.lora_rank=4",
                                 "generator.weight_sync=broadcast", "generator.sync_bucket_mb=0.5",
                                 "trainer.lr=1e-3"])
    records = [json.loads(l) for l in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    assert {"event": "weight_sync", "transport": "BroadcastTransport"} in records
    assert [r["step"] for r in records if "sync/seconds" in r] == [1, 2]
    before, after = _weights(Path(summary["model_path"])), _weights(tmp_path / "s" / "policy")
    assert sorted(before) == sorted(after)  # merged LoRA: a plain checkpoint under the base names
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith("proj.weight") for k in changed), changed  # only the adapted layers moved


@pytest.mark.slow
def test_grpo_uses_reference_kl(tmp_path):
    summary = grpo.main(SMALL + ["run.steps=2", f"run.output_dir={tmp_path}", "run.name=g", "run.save_policy=false"])
    records = [json.loads(l) for l in (tmp_path / "g" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "reward/mean" in r]
    assert "actor/kl_loss" in steps[-1] and steps[-1]["actor/kl_loss"] >= 0
    assert steps[0]["dynamic_sampling/gen_batches"] == 1
    assert summary["steps"] == 2


@pytest.mark.slow
def test_raising_reward_is_counted_and_run_goes_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("my_rewards.py").write_text(
        "def boom(prompt, completion, **kw):\n    raise RuntimeError('reward bug')\n")
    dapo.main(SMALL + ["run.steps=1", "run.name=r", "run.save_policy=false",
                       "reward.fns=[math_verify,./my_rewards.py:boom]", "reward.weights=[1.0,0.5]"])
    records = [json.loads(l) for l in (tmp_path / "runs" / "r" / "metrics.jsonl").read_text().splitlines()]
    step = next(r for r in records if "reward/mean" in r)
    assert step["reward/boom/failures"] > 0


def test_missing_model_path_stops_before_any_actor(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        dapo.main([f"model.path={tmp_path}/nope", f"run.output_dir={tmp_path}"])
    assert e.value.code == 2
    assert "model.path" in capsys.readouterr().err and not list(tmp_path.glob("*/metrics.jsonl"))


def test_malformed_dataset_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"prompt": "What is 1 + 1?", "answer": "2"}\nnot json\n')
    with pytest.raises(SystemExit):
        dapo.main([f"data.train={bad}", f"run.output_dir={tmp_path}"])
    assert f"{bad}:2" in capsys.readouterr().err


def test_unknown_reward_lists_registered(tmp_path, capsys):
    with pytest.raises(SystemExit):
        dapo.main(["reward.fns=[math_verfy]", f"run.output_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert "math_verfy" in err and "math_verify" in err


@pytest.mark.slow
def test_dynamic_sampling_keeps_generating_then_masks_padding(tmp_path, monkeypatch):
    """A reward that is equal for every sample leaves no group with signal: DAPO generates
    `max_gen_batches` batches, pads the batch with masked groups and still takes a clean step."""
    monkeypatch.chdir(tmp_path)
    Path("flat.py").write_text("def flat(prompt, completion, **kw):\n    return 1.0\n")
    dapo.main(SMALL + ["run.steps=1", "run.name=ds", "run.save_policy=false", "reward.fns=[./flat.py:flat]",
                       "algorithm.dynamic_sampling.max_gen_batches=3", "algorithm.overlong.shaping=false"])
    records = [json.loads(l) for l in (tmp_path / "runs" / "ds" / "metrics.jsonl").read_text().splitlines()]
    step = next(r for r in records if "reward/mean" in r)
    assert step["dynamic_sampling/gen_batches"] == 3
    assert step["dynamic_sampling/filtered_frac"] == 1.0
    assert step["dynamic_sampling/padded_groups"] == 4 and step["batch/loss_tokens"] == 0
    # no token carries a loss: no policy-loss figure is made up, and the step moves nothing
    assert "actor/pg_loss" not in step and step["actor/grad_norm"] == 0.0


@pytest.mark.slow
def test_a_nan_reward_is_a_counted_failure_and_the_weights_stay_finite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("nan_reward.py").write_text("def nan_dict(prompt, completion, **kw):\n    return {'score': float('nan')}\n")
    summary = grpo.main(SMALL + ["run.steps=1", "run.name=nan", "reward.fns=[./nan_reward.py:nan_dict]"])
    records = [json.loads(l) for l in (tmp_path / "runs" / "nan" / "metrics.jsonl").read_text().splitlines()]
    step = next(r for r in records if "reward/mean" in r)
    assert step["reward/nan_dict/failures"] == 16 and step["reward/mean"] == 0.0
    assert step["actor/skipped_steps"] == 0.0  # nothing non-finite reached the trainer
    weights = _weights(tmp_path / "runs" / "nan" / "policy")
    assert all(bool(torch.isfinite(w).all()) for w in weights.values())
    assert summary["accuracy_after"] >= summary["accuracy_before"] - 0.1  # math_verify still scores held-out
