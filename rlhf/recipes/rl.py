"""The RL step shared by GRPO and DAPO, as named phases, each timed:

    collect   generate -> reward (+ overlong shaping) -> dynamic sampling, until the batch is full
    prepare   reference log-probs (KL term), old log-probs (several updates per batch), advantages
    update    one optimizer step per mini-batch on the DeepSpeed trainer actors
    sync      trainer weights -> generators

Off-policy rollouts (`rollout.max_staleness = k > 0`): before the update of step t the
generators are handed the generation batches of the next k steps, so they sample while the
trainer trains; weights are pushed after each update without waiting, and a generator loads
them between two generation requests (Ray runs an actor's calls in order). Every sample
carries the version of the weights that drew it (the number of updates behind it), groups
older than k versions are never trained on, and the loss corrects for the gap with truncated
importance sampling against the engine's log-probs (`algorithm.rollout_correction`).

Each step logs seconds per kind of work (`timing/generate_s`, `reward_s`, `reference_s`,
`old_logprobs_s`, `update_s`, `sync_s`) and the step's wall time. A generator or reward actor
that dies is restarted (generators then get the current weights) and the call is repeated;
generation is seeded per step, so the repeat gives the same samples.

The driver holds no model: it moves token ids and small tensors between the actors.
Recipes differ only in their config (see `rlhf.recipes.dapo` / `rlhf.recipes.grpo`).
"""

from __future__ import annotations

import dataclasses

import logging
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

import ray
import torch

from rlhf.actors.generator import SamplingSettings
from rlhf.actors.trainer import PolicyLossSettings
from rlhf.algorithms import get_advantage_estimator, groups_with_signal, overlong_penalty
from rlhf.batch import Completion, collate, num_rows, split_rows, trim_padding
from rlhf.data.prompts import PromptSampler, PromptSet
from rlhf.metrics import combine_shards, mean_dicts, pass_at_k

log = logging.getLogger(__name__)


@dataclass
class GenerationRequest:
    """One generation batch: its prompts and sampling settings, and once issued, one Ray
    object ref per generator chunk (`refs` None: not issued yet)."""

    prompts: PromptSet
    prompt_idx: Optional[list[int]]  # rows of the training set (None for evaluation prompts)
    settings: SamplingSettings
    chunks: Optional[list[list[int]]] = None
    refs: Optional[list] = None


class RLLoop:
    def __init__(self, cfg, roles, tokenizer, train: PromptSet, evalset: PromptSet, transport):
        self.cfg, self.roles, self.tokenizer = cfg, roles, tokenizer
        self.train, self.evalset, self.transport = train, evalset, transport
        self.sampler = PromptSampler(len(train), cfg.data.seed)
        self.version = 0  # updates pushed to the generators: the policy version samples are tagged with
        self.staleness = cfg.rollout.max_staleness
        if self.staleness and cfg.generator.sleep_while_training:
            log.warning("rollout.max_staleness=%d needs the generators awake while the trainer trains, but "
                        "generator.sleep_while_training is on (colocated): running synchronously", self.staleness)
            self.staleness = 0
        self._ahead: deque[GenerationRequest] = deque()  # issued for coming steps (off-policy)
        self._pending_loads: list = []  # weight loads not yet confirmed (off-policy sync)
        self._issued_this_step = 0
        self.step_idx = 0
        self.timing: dict[str, float] = {}
        self.events: list[dict] = []  # actor restarts, for the run's log
        self.restarts = 0

    def state_dict(self) -> dict:
        """What the driver needs to continue (the actors' state is checkpointed by them). Batches
        generated ahead are stored as prompts and seeds and drawn again on resume, from the
        checkpoint's weights."""
        return {"step": self.step_idx, "version": self.version, "sampler": self.sampler.state(),
                "ahead": [{"prompt_idx": r.prompt_idx, "seed": r.settings.seed} for r in self._ahead]}

    def load_state_dict(self, state: dict) -> None:
        self.step_idx, self.version = state["step"], state["version"]
        self.sampler.load_state(state["sampler"])
        self._ahead = deque(self._request(a["prompt_idx"], a["seed"]) for a in state.get("ahead", []))

    # ---- phases ------------------------------------------------------------------------

    def generate(self, prompts: PromptSet, s: SamplingSettings) -> list[Completion]:
        """`s.n` completions per prompt, prompt-major; prompts are spread over the generators."""
        return self._wait(GenerationRequest(prompts, None, s))

    def _request(self, prompt_idx: list[int], seed: Optional[int] = None) -> GenerationRequest:
        r = self.cfg.rollout
        if seed is None:  # one seed per generation batch: a repeat (restart, resume) draws the same samples
            seed = self.cfg.run.seed * 1_000_003 + self.step_idx * 1009 + self._issued_this_step
            self._issued_this_step += 1
        return GenerationRequest(self.train.select(prompt_idx), prompt_idx,
                                 SamplingSettings(r.n, r.temperature, r.top_p, r.max_new_tokens, seed,
                                                  ignore_eos=r.ignore_eos))

    def _issue(self, req: GenerationRequest) -> GenerationRequest:
        gens = self.roles.generators
        k, s = len(gens), req.settings
        req.chunks = [c for c in (list(range(len(req.prompts)))[i::k] for i in range(k)) if c]
        req.refs = [gens.actors[j].generate.remote(
            [req.prompts.prompt_ids[i] for i in chunk],
            dataclasses.replace(s, seed=s.seed + j))
            for j, chunk in enumerate(req.chunks)]
        return req

    def _wait(self, req: GenerationRequest) -> list[Completion]:
        """The request's completions, issuing it first if needed; when a generator died, it is
        restarted and this request and those issued ahead are issued again."""
        if req.refs is None:
            self._issue(req)

        def get():
            ray.get(self._pending_loads)  # a failed weight load surfaces here
            self._pending_loads = []
            return ray.get(req.refs)

        def reissue():
            self._pending_loads = []
            for r in (req, *self._ahead):
                self._issue(r)

        with self._timed("generate"):
            results = self._recovering(self.roles.generators, get, after_restart=reissue)
        n = req.settings.n
        out: list = [None] * len(req.prompts)
        for chunk, comps in zip(req.chunks, results):
            for j, i in enumerate(chunk):
                out[i] = comps[j * n:(j + 1) * n]
        return [c for group in out for c in group]

    def prefetch(self) -> None:
        """Off-policy: keep the generation batches of the next `max_staleness` steps in flight."""
        gen_prompts = self.cfg.rollout.gen_prompts if self.cfg.algorithm.dynamic_sampling.enabled \
            else self.cfg.rollout.prompts_per_step
        while len(self._ahead) < self.staleness:
            self._ahead.append(self._issue(self._request(self.sampler.next(gen_prompts))))

    def score(self, prompts: PromptSet, completions: list[Completion], n: int, split: str = "train"):
        """Rewards of every completion (rule rewards on the reward actors), and their metrics."""
        texts = [self.tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in completions]
        rep = lambda xs: [x for x in xs for _ in range(n)]  # noqa: E731  (one entry per completion)
        prompts_rep = rep(prompts.prompts)
        columns = {k: rep(v) for k, v in prompts.columns.items()}
        lengths = [len(c.token_ids) for c in completions]
        truncated = [not c.finished for c in completions]
        w = len(self.roles.rewards)
        parts = [range(i * len(texts) // w, (i + 1) * len(texts) // w) for i in range(w)]
        rewards = self.roles.rewards
        with self._timed("reward"):
            results = self._recovering(rewards, lambda: rewards.scatter(
                lambda a, p: a.score.remote([prompts_rep[i] for i in p], [texts[i] for i in p],
                                            {k: [v[i] for i in p] for k, v in columns.items()},
                                            [lengths[i] for i in p], [truncated[i] for i in p], split), parts))
        scores = torch.tensor([s for r, _ in results for s in r], dtype=torch.float32)
        metrics = _combine_reward_metrics([m for _, m in results], [len(p) for p in parts])
        if self.roles.reward_model is not None and split == "train":
            with self._timed("reward_model"):
                (rm,) = self.roles.reward_model.each(lambda a: a.score.remote(prompts_rep, texts))
            rm = torch.tensor(rm, dtype=torch.float32)
            scores = scores + self.cfg.reward.model_weight * rm
            metrics |= {"reward/model/mean": float(rm.mean()), "reward/model/std": float(rm.std())}
        return scores, metrics

    def collect(self) -> tuple[dict, torch.Tensor, dict]:
        """A full training batch of `prompts_per_step` groups; with dynamic sampling (DAPO eq. 11)
        groups whose rewards are all equal are dropped and more are generated, up to
        `max_gen_batches` generation batches; if still short, dropped groups fill the
        batch with their loss masked out (logged as `dynamic_sampling/padded_groups`)."""
        r, a = self.cfg.rollout, self.cfg.algorithm
        ds = a.dynamic_sampling
        want, n = r.prompts_per_step, r.n
        gen_prompts = r.gen_prompts if ds.enabled else r.prompts_per_step
        kept, dropped, metrics_list = [], [], []
        gen_batches = stale = 0
        while len(kept) < want and (gen_batches < ds.max_gen_batches or not ds.enabled):
            req = self._ahead.popleft() if self._ahead else self._request(self.sampler.next(gen_prompts))
            prompts = req.prompts
            completions = self._wait(req)
            scores, metrics = self.score(prompts, completions, n)
            scores, shaping = self._shape(scores, completions)
            metrics |= shaping
            keep_G = groups_with_signal(scores, n) if ds.enabled else torch.ones(len(prompts), dtype=torch.bool)
            for g in range(len(prompts)):
                group = (prompts.prompt_ids[g], completions[g * n:(g + 1) * n], scores[g * n:(g + 1) * n])
                if min(c.version for c in group[1]) < self.version - self.staleness:
                    stale += 1  # never trained on, not even as masked padding
                    continue
                (kept if keep_G[g] else dropped).append(group)
            metrics["dynamic_sampling/kept_frac"] = float(keep_G.float().mean())
            metrics_list.append(metrics)
            gen_batches += 1
            if not ds.enabled:
                break
        padded = max(0, want - len(kept))
        groups = kept[:want] + dropped[:padded]
        prompt_ids = [p for p, comps, _ in groups for _ in comps]
        batch = collate(prompt_ids, [c for _, comps, _ in groups for c in comps], self.tokenizer.pad_token_id)
        scores = torch.cat([s for _, _, s in groups])
        if padded:
            batch["response_mask_BR"][len(kept) * n:] = 0
        if a.overlong.filter:  # DAPO overlong filtering: truncated samples carry no loss
            finished = torch.tensor([c.finished for _, comps, _ in groups for c in comps])
            batch["response_mask_BR"][~finished] = 0
        metrics = mean_dicts(metrics_list)
        metrics |= {"dynamic_sampling/gen_batches": gen_batches, "dynamic_sampling/padded_groups": padded,
                    "dynamic_sampling/filtered_frac": len(dropped) / max(1, len(kept) + len(dropped))}
        ages = torch.tensor([self.version - c.version for _, comps, _ in groups for c in comps], dtype=torch.float32)
        metrics |= {"offpolicy/staleness_mean": float(ages.mean()), "offpolicy/staleness_max": float(ages.max()),
                    "offpolicy/stale_groups_dropped": stale}
        metrics |= _response_metrics(batch, scores, [c for _, comps, _ in groups for c in comps])
        return batch, scores, metrics

    def _shape(self, scores: torch.Tensor, completions: list[Completion]):
        o = self.cfg.algorithm.overlong
        if not o.shaping:
            return scores, {}
        lengths = torch.tensor([len(c.token_ids) for c in completions], dtype=torch.float32)
        penalty = overlong_penalty(lengths, max_len=self.cfg.rollout.max_new_tokens, cache_len=o.cache_len,
                                   penalty_factor=o.penalty_factor)
        return scores + penalty, {"reward/overlong_penalty": float(penalty.mean())}

    def prepare(self, batch: dict, scores: torch.Tensor) -> dict:
        a, t = self.cfg.algorithm, self.cfg.trainer
        temp = self.cfg.rollout.temperature
        if a.kl_coef > 0:
            with self._timed("reference"):
                (batch["ref_logprobs_BR"],) = self.roles.reference.each(lambda ref: ref.logprobs.remote(batch, temp))
        if t.mini_batches * t.epochs > 1:  # otherwise pi_old is the policy itself: ratio 1 at the step
            shards = split_rows(batch, len(self.roles.trainers))
            with self._timed("old_logprobs"):
                batch["old_logprobs_BR"] = torch.cat(self.roles.trainers.scatter(
                    lambda tr, s: tr.logprobs.remote(trim_padding(s), temp), shards))
        estimator = get_advantage_estimator(a.adv_estimator)
        batch["advantages_BR"], _ = estimator(response_mask_BR=batch["response_mask_BR"], scores_B=scores,
                                              group_size=self.cfg.rollout.n, eps=a.norm_eps)
        return batch

    def shards(self, batch: dict, world: int) -> tuple[list[list[dict]], list[dict]]:
        """Each rank's shard of every mini-batch of every epoch, and each mini-batch's global
        token/sequence counts (the loss normalisers)."""
        t = self.cfg.trainer
        per_rank: list[list] = [[] for _ in range(world)]
        counts = []
        for _ in range(t.epochs):
            for mb in split_rows(batch, t.mini_batches):
                mask = mb["response_mask_BR"]
                counts.append({"num_tokens": float(mask.sum()), "num_seqs": float((mask.sum(1) > 0).sum())})
                for rank, shard in enumerate(split_rows(mb, world)):
                    per_rank[rank].append(trim_padding(shard))
        return per_rank, counts

    def update(self, batch: dict) -> dict:
        a = self.cfg.algorithm
        per_rank, counts = self.shards(batch, len(self.roles.trainers))
        loss = PolicyLossSettings(
            name=a.policy_loss, eps_low=a.eps_low, eps_high=a.eps_high, dual_clip=a.dual_clip,
            agg_mode=a.loss_agg, norm_len=self.cfg.rollout.max_new_tokens,
            kl_estimator=a.kl_estimator, temperature=self.cfg.rollout.temperature, rollout_is=self._rollout_is(),
            kl_coef=a.kl_coef if a.kl_penalty == "loss" else 0.0)
        results = self.roles.trainers.scatter(lambda tr, shards: tr.train_rl.remote(shards, counts, loss), per_rank)
        self.version += 1
        return combine_shards(results)

    def _rollout_is(self) -> Optional[dict]:
        rc = self.cfg.algorithm.rollout_correction
        on = rc.enabled if rc.enabled is not None else self.staleness > 0
        return {"cap": rc.cap, "level": rc.level, "mode": rc.mode} if on else None

    def sync(self, wait: Optional[bool] = None) -> dict:
        """Pushes the trainers' weights; off-policy it does not wait for the generators to load
        them (they do, in order, after the requests already handed to them)."""
        wait = self.staleness == 0 if wait is None else wait
        gens = self.roles.generators
        stats = self._recovering(gens, lambda: self.transport.sync(self.roles.trainers, gens, self.version,
                                                                   wait=wait), resync=False)
        self._pending_loads += stats.pending
        return {"sync/seconds": stats.seconds, "sync/bytes": stats.num_bytes}

    # ---- one step and evaluation -------------------------------------------------------

    def step(self) -> dict:
        self.timing = {}
        self._issued_this_step = 0
        t0 = time.perf_counter()
        batch, scores, metrics = self.collect()
        batch = self.prepare(batch, scores)
        self.prefetch()  # off-policy: the generators sample the next batches during the update
        sleep = self.cfg.generator.sleep_while_training
        if sleep:  # colocated: the engine gives its GPU memory to the trainer during the update
            self.roles.generators.each(lambda g: g.sleep.remote())
        with self._timed("update"):
            metrics |= self.update(batch)
        if sleep:
            self.roles.generators.each(lambda g: g.wake_up.remote())
        with self._timed("sync"):
            metrics |= self.sync()
        self.step_idx += 1
        tokens = float(batch["response_mask_BR"].sum())
        total = time.perf_counter() - t0
        metrics |= {f"timing/{k}_s": v for k, v in self.timing.items()}
        metrics |= {"timing/step_s": total, "throughput/response_tokens_per_s": tokens / max(total, 1e-9),
                    "step": self.step_idx, "policy_version": self.version}
        return metrics

    def evaluate(self) -> dict:
        """Held-out accuracy: the weighted score of `reward.eval_fns` on greedy completions; with
        `run.eval_samples = n` also avg@n (mean score of n samples per prompt) and the unbiased
        pass@k (Chen et al. 2021) over those samples, a sample passing when its score is >= 1."""
        r, run = self.cfg.rollout, self.cfg.run
        t0 = time.perf_counter()
        completions = self.generate(self.evalset, SamplingSettings(1, 0.0, 1.0, r.max_new_tokens, seed=0))
        scores, _ = self.score(self.evalset, completions, 1, split="eval")
        out = {"eval/accuracy": float(scores.mean()), "eval/response_length": _mean_len(completions)}
        n = run.eval_samples
        if n:
            # one fixed seed: every evaluation draws with the same noise, so curves compare policies
            sampled = self.generate(self.evalset, SamplingSettings(n, r.temperature, r.top_p, r.max_new_tokens,
                                                                   seed=run.seed + 7919))
            s, _ = self.score(self.evalset, sampled, n, split="eval")
            correct = (s.view(-1, n) >= 1.0).sum(1).tolist()
            out[f"eval/avg@{n}"] = float(s.mean())
            for k in run.eval_pass_k:
                out[f"eval/pass@{k}"] = sum(pass_at_k(n, c, k) for c in correct) / len(correct)
        return out | {"eval/seconds": time.perf_counter() - t0, "step": self.step_idx}

    # ---- plumbing ------------------------------------------------------------------------

    def _recovering(self, group, call, resync: bool = True, after_restart=None):
        """`call()`; when an actor of `group` has died, restart it (a generator then gets the
        current weights when `resync`), run `after_restart()` and call again, up to
        `run.max_actor_restarts` restarts in all."""
        while True:
            try:
                return call()
            except ray.exceptions.RayActorError as e:
                dead = group.dead_ranks()
                if not dead or self.restarts + len(dead) > self.cfg.run.max_actor_restarts:
                    raise
                for rank in dead:
                    self.restarts += 1
                    log.warning("%s actor %d died (%s); restarting it (%d/%d restarts)", group.name, rank,
                                type(e).__name__, self.restarts, self.cfg.run.max_actor_restarts)
                    group.restart(rank)
                    self.events.append({"event": "actor_restarted", "role": group.name, "rank": rank,
                                        "step": self.step_idx + 1, "error": str(e).splitlines()[0][:200]})
                if resync and group is self.roles.generators:
                    self.sync(wait=True)
                if after_restart is not None:
                    after_restart()

    @contextmanager
    def _timed(self, phase: str):
        """Adds the block's seconds to `phase` (a phase may run several times in a step)."""
        t0 = time.perf_counter()
        yield
        self.timing[phase] = self.timing.get(phase, 0.0) + time.perf_counter() - t0


# ---- metric helpers ------------------------------------------------------------------------

def _combine_reward_metrics(parts: list[dict], sizes: list[int]) -> dict:
    """Counts (`/failures`) add up over reward actors; means are weighted by items scored."""
    out: dict[str, float] = {}
    total = sum(sizes)
    for metrics, size in zip(parts, sizes):
        for k, v in metrics.items():
            out[k] = out.get(k, 0.0) + (v if k.endswith("/failures") else v * size / max(total, 1))
    return out


def _response_metrics(batch: dict, scores: torch.Tensor, completions: list[Completion]) -> dict:
    lengths = torch.tensor([len(c.token_ids) for c in completions], dtype=torch.float32)
    return {"reward/mean": float(scores.mean()), "reward/std": float(scores.std()),
            "response/length_mean": float(lengths.mean()), "response/length_max": float(lengths.max()),
            "response/truncated_frac": float(sum(not c.finished for c in completions) / len(completions)),
            "batch/sequences": num_rows(batch), "batch/loss_tokens": float(batch["response_mask_BR"].sum())}


def _mean_len(completions: list[Completion]) -> float:
    return sum(len(c.token_ids) for c in completions) / max(1, len(completions))
