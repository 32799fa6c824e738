"""Held-out accuracy by generation, shared by RL and supervised runs: greedy completions scored
by the eval reward functions, and with k samples per prompt avg@k and the unbiased pass@k."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.actors.generator import SamplingSettings
from rlhf.data.prompts import PromptSet
from rlhf.envs import episode_metrics
from rlhf.metrics import pass_at_k


@dataclass
class EvalSettings:
    max_new_tokens: int
    temperature: float = 1.0  # of the sampled completions (greedy ones use 0)
    top_p: float = 1.0
    samples: int = 0  # sampled completions per prompt (0: greedy only)
    pass_k: tuple = ()
    seed: int = 0


def held_out_metrics(rollouts, evalset: PromptSet, s: EvalSettings) -> dict:
    """`eval/accuracy`: the weighted eval score of greedy completions, and each eval reward's own
    metrics on them (`eval/<fn>/mean`, `eval/math_verify/format_rate`, ...); with `s.samples = n`
    also avg@n (mean score of n samples per prompt), pass@k (Chen et al. 2021), a sample
    passing when its score is >= 1, and for multi-turn episodes `eval/sampled/tools/...`."""
    completions = rollouts.generate(evalset, SamplingSettings(1, 0.0, 1.0, s.max_new_tokens, seed=0, logprobs=False))
    scores, reward_metrics = rollouts.score(evalset, completions, 1, split="eval")
    lengths = sum(len(c.token_ids) for c in completions) / max(1, len(completions))
    out = {"eval/accuracy": float(scores.mean()), "eval/response_length": lengths}
    out |= episode_metrics(completions, prefix="eval/")
    out |= {"eval/" + k.removeprefix("reward/"): v for k, v in reward_metrics.items()}
    n = s.samples
    if n:
        # one fixed seed: every evaluation draws with the same noise, so curves compare policies
        sampled = rollouts.generate(evalset, SamplingSettings(n, s.temperature, s.top_p, s.max_new_tokens,
                                                              seed=s.seed + 7919, logprobs=False))
        scores, _ = rollouts.score(evalset, sampled, n, split="eval")
        correct = (scores.view(-1, n) >= 1.0).sum(1).tolist()
        out[f"eval/avg@{n}"] = float(scores.mean())
        out |= episode_metrics(sampled, prefix="eval/sampled/")  # multi-turn: e.g. how often sampling calls a tool
        for k in s.pass_k:
            out[f"eval/pass@{k}"] = sum(pass_at_k(n, c, k) for c in correct) / len(correct)
    return out


class TaskAccuracy:
    """Held-out accuracy of a supervised run's trainers: a generator receives their weights,
    reward actors score with `cfg.eval.fns`. Needs rows with the prompt column and the columns
    the eval rewards read (e.g. `answer`)."""

    def __init__(self, cfg, tokenizer, rows: list[dict], source: str, model_path: str, trainers):
        from rlhf.config import GeneratorConfig, RewardConfig
        from rlhf.data.prompts import build_prompt_set
        from rlhf.loops.recovery import ActorRecovery
        from rlhf.metrics import PhaseTimer
        from rlhf.loops.rollout import Rollouts
        from rlhf.startup.roles import Roles, create_generators, create_rewards
        from rlhf.sync import make_transport

        generator = GeneratorConfig(gpus_per_worker=cfg.eval.generator_gpus)
        self.evalset = build_prompt_set(rows[:cfg.data.num_eval], tokenizer, cfg.data, source)
        self.roles = Roles(trainers=trainers, generators=create_generators(cfg, generator, model_path),
                           rewards=create_rewards(RewardConfig(fns=list(cfg.eval.fns), eval_fns=list(cfg.eval.fns))))
        self.transport = make_transport(generator, trainers, self.roles.generators)
        self.rollouts = Rollouts(self.roles, tokenizer, ActorRecovery(0, lambda: 0), PhaseTimer(), self._sync)
        self.settings = EvalSettings(cfg.eval.max_new_tokens)
        self.version = 0

    @staticmethod
    def possible(cfg, rows: list[dict]) -> bool:
        return bool(rows) and cfg.data.prompt_key in rows[0] and (cfg.data.answer_key in rows[0] or "answer" in rows[0])

    def _sync(self) -> None:
        self.version += 1
        self.transport.sync(self.roles.trainers, self.roles.generators, self.version)

    def __call__(self) -> float:
        self._sync()
        return held_out_metrics(self.rollouts, self.evalset, self.settings)["eval/accuracy"]

    def kill(self) -> None:
        self.roles.generators.kill()
        self.roles.rewards.kill()
