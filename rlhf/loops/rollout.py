"""Rollout scheduling: generation requests spread over the generators, rewards from the reward
actors, both surviving actor deaths, and, off-policy, the requests of coming steps kept in
flight while the trainer trains.

Ray runs an actor's calls in order, so a weight load pushed after requests already handed
to a generator takes effect between two requests; every sample carries the version of the
weights that drew it."""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

import ray
import torch

from rlhf.actors.generator import SamplingSettings
from rlhf.batch import Completion
from rlhf.data.prompts import PromptSet
from rlhf.metrics import PhaseTimer, combine_reward_metrics


@dataclass
class GenerationRequest:
    """One generation batch: its prompts and sampling settings, and once issued, one Ray
    object ref per generator chunk (`refs` None: not issued yet)."""

    prompts: PromptSet
    prompt_idx: Optional[list[int]]  # rows of the training set (None for evaluation prompts)
    settings: SamplingSettings
    chunks: Optional[list[list[int]]] = None
    refs: Optional[list] = None


class Rollouts:
    """`roles` needs `generators` and `rewards` (and `reward_model`, or None); `resync()` gives a
    restarted generator the current weights."""

    def __init__(self, roles, tokenizer, recovery, timer: PhaseTimer, resync: Callable[[], None],
                 reward_model_weight: float = 1.0):
        self.roles, self.tokenizer, self.recovery, self.timer = roles, tokenizer, recovery, timer
        self.resync, self.reward_model_weight = resync, reward_model_weight
        self.ahead: deque[GenerationRequest] = deque()  # issued for coming steps (off-policy)
        self.pending_loads: list = []  # weight loads not yet confirmed (off-policy sync)

    def issue(self, req: GenerationRequest) -> GenerationRequest:
        """Hands the request's prompts to the generators, dealt round-robin (generator j samples
        with seed + j)."""
        gens = self.roles.generators
        k, s = len(gens), req.settings
        req.chunks = [c for c in (list(range(len(req.prompts)))[i::k] for i in range(k)) if c]
        rows = req.prompts.rows()  # a multi-turn environment starts its episodes from them
        req.refs = [gens.actors[j].generate.remote([req.prompts.prompt_ids[i] for i in chunk],
                                                   dataclasses.replace(s, seed=s.seed + j), [rows[i] for i in chunk])
                    for j, chunk in enumerate(req.chunks)]
        return req

    def wait(self, req: GenerationRequest) -> list[Completion]:
        """The request's completions, prompt-major, issuing it first if needed; when a generator
        died, it is restarted and this request and those issued ahead are issued again."""
        if req.refs is None:
            self.issue(req)

        def get():
            ray.get(self.pending_loads)  # a failed weight load surfaces here
            self.pending_loads = []
            return ray.get(req.refs)

        def restarted():
            self.resync()
            self.pending_loads = []
            for r in (req, *self.ahead):
                self.issue(r)

        with self.timer.timed("generate"):
            results = self.recovery.call(self.roles.generators, get, after_restart=restarted)
        n = req.settings.n
        out: list = [None] * len(req.prompts)
        for chunk, comps in zip(req.chunks, results):
            for j, i in enumerate(chunk):
                out[i] = comps[j * n:(j + 1) * n]
        return [c for group in out for c in group]

    def generate(self, prompts: PromptSet, s: SamplingSettings) -> list[Completion]:
        """`s.n` completions per prompt, prompt-major."""
        return self.wait(GenerationRequest(prompts, None, s))

    def score(self, prompts: PromptSet, completions: list[Completion], n: int, split: str = "train"):
        """Rewards of every completion (rule rewards on the reward actors, plus an environment's
        own episode reward, plus the reward model's weighted score on training samples), and
        their metrics. A multi-turn episode is scored on its whole response text, observations
        included, as the model read it."""
        texts = [self.tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in completions]
        rep = lambda xs: [x for x in xs for _ in range(n)]  # noqa: E731  (one entry per completion)
        prompts_rep = rep(prompts.prompts)
        columns = {k: rep(v) for k, v in prompts.columns.items()}
        lengths = [len(c.token_ids) for c in completions]
        truncated = [not c.finished for c in completions]
        rewards = self.roles.rewards
        w = len(rewards)
        parts = [range(i * len(texts) // w, (i + 1) * len(texts) // w) for i in range(w)]
        with self.timer.timed("reward"):
            results = self.recovery.call(rewards, lambda: rewards.scatter(
                lambda a, p: a.score.remote([prompts_rep[i] for i in p], [texts[i] for i in p],
                                            {k: [v[i] for i in p] for k, v in columns.items()},
                                            [lengths[i] for i in p], [truncated[i] for i in p], split), parts))
        scores = torch.tensor([s for r, _ in results for s in r], dtype=torch.float32)
        metrics = combine_reward_metrics([m for _, m in results], [len(p) for p in parts])
        env_rewards = [c.episode["reward"] if c.episode else None for c in completions]
        if any(r is not None for r in env_rewards):  # an environment's own reward adds to the functions'
            env_B = torch.tensor([r or 0.0 for r in env_rewards], dtype=torch.float32)
            scores = scores + env_B
            metrics["reward/env/mean"] = float(env_B.mean())
        if self.roles.reward_model is not None and split == "train":
            with self.timer.timed("reward_model"):
                (rm,) = self.roles.reward_model.each(lambda a: a.score.remote(prompts_rep, texts))
            rm = torch.tensor(rm, dtype=torch.float32)
            scores = scores + self.reward_model_weight * rm
            metrics |= {"reward/model/mean": float(rm.mean()), "reward/model/std": float(rm.std())}
        return scores, metrics
