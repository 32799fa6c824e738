"""The RL step shared by GRPO and DAPO, as named phases, each timed:

    collect   generate -> reward (+ overlong shaping) -> dynamic sampling, until the batch is full
    prepare   reference log-probs (KL term), old log-probs (several updates per batch), advantages
    update    one optimizer step per mini-batch on the DeepSpeed trainer actors
    sync      trainer weights -> generators

Off-policy rollouts (`rollout.max_staleness = k > 0`): before the update of step t the
generators are handed the generation batches of the next k steps (`rlhf.loops.rollout`), so
they sample while the trainer trains; weights are pushed after each update without waiting.
Groups older than k versions are never trained on, and the loss corrects for the gap with
truncated importance sampling against the engine's log-probs (`algorithm.rollout_correction`).

Each step logs seconds per kind of work (`timing/generate_s`, `reward_s`, `reference_s`,
`old_logprobs_s`, `update_s`, `sync_s`) and the step's wall time. A generator or reward actor
that dies is restarted (generators then get the current weights) and the call is repeated;
generation is seeded per step, so the repeat gives the same samples.

The loop holds no model: it moves token ids and small tensors between the actors. PPO
overrides `prepare` and `update` (`rlhf.loops.ppo`); DAPO and GRPO differ only in config.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

import torch

from rlhf.actors.generator import SamplingSettings
from rlhf.algorithms import get_advantage_estimator
from rlhf.algorithms.objective import PolicyLossSettings
from rlhf.batch import update_shards
from rlhf.packing import gather_rows, rl_micro_batches
from rlhf.data.prompts import PromptSampler, PromptSet
from rlhf.loops.collect import collect_batch
from rlhf.loops.evaluation import EvalSettings, held_out_metrics
from rlhf.loops.recovery import ActorRecovery
from rlhf.loops.rollout import GenerationRequest, Rollouts
from rlhf.metrics import PhaseTimer, combine_shards

log = logging.getLogger(__name__)


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
        self.step_idx = 0
        self._issued_this_step = 0
        self.timer = PhaseTimer()
        self.recovery = ActorRecovery(cfg.run.max_actor_restarts, step_of=lambda: self.step_idx + 1)
        self.rollouts = Rollouts(roles, tokenizer, self.recovery, self.timer, resync=lambda: self.sync(wait=True),
                                 reward_model_weight=cfg.reward.model_weight)

    @property
    def events(self) -> list[dict]:
        """Actor restarts since the driver last logged them."""
        return self.recovery.events

    def state_dict(self) -> dict:
        """What the driver needs to continue (the actors' state is checkpointed by them). Batches
        generated ahead are stored as prompts and seeds and drawn again on resume, from the
        checkpoint's weights."""
        return {"step": self.step_idx, "version": self.version, "sampler": self.sampler.state(),
                "ahead": [{"prompt_idx": r.prompt_idx, "seed": r.settings.seed} for r in self.rollouts.ahead]}

    def load_state_dict(self, state: dict) -> None:
        self.step_idx, self.version = state["step"], state["version"]
        self.sampler.load_state(state["sampler"])
        self.rollouts.ahead.extend(self._request(a["prompt_idx"], a["seed"]) for a in state.get("ahead", []))

    # ---- phases ------------------------------------------------------------------------

    def _request(self, prompt_idx: list[int], seed: Optional[int] = None) -> GenerationRequest:
        r = self.cfg.rollout
        if seed is None:  # one seed per generation batch: a repeat (restart, resume) draws the same samples
            seed = self.cfg.run.seed * 1_000_003 + self.step_idx * 1009 + self._issued_this_step
            self._issued_this_step += 1
        # the engine's log-probs serve the truncated-IS correction alone; unasked, vLLM skips them
        return GenerationRequest(self.train.select(prompt_idx), prompt_idx,
                                 SamplingSettings(r.n, r.temperature, r.top_p, r.max_new_tokens, seed,
                                                  ignore_eos=r.ignore_eos, logprobs=self._rollout_is() is not None))

    def _gen_prompts(self) -> int:
        r = self.cfg.rollout
        return r.gen_prompts if self.cfg.algorithm.dynamic_sampling.enabled else r.prompts_per_step

    def prefetch(self) -> None:
        """Off-policy: keep the generation batches of the next `max_staleness` steps in flight."""
        while len(self.rollouts.ahead) < self.staleness:
            self.rollouts.ahead.append(self.rollouts.issue(self._request(self.sampler.next(self._gen_prompts()))))

    def collect(self) -> tuple[dict, torch.Tensor, dict]:
        """A full training batch of `prompts_per_step` groups (`rlhf.loops.collect`)."""
        def next_request() -> GenerationRequest:
            ahead = self.rollouts.ahead
            return ahead.popleft() if ahead else self._request(self.sampler.next(self._gen_prompts()))

        return collect_batch(self.cfg, self.rollouts, next_request, self.tokenizer.pad_token_id, self.version,
                             self.staleness)

    def old_logprobs(self, batch: dict) -> torch.Tensor:
        """pi_old of every row, scored by the trainer ranks in packed micro-batches."""
        with self.timer.timed("old_logprobs"):
            T = self.cfg.rollout.temperature
            return self._score(self.roles.trainers, batch, lambda tr, mbs: tr.score.remote(mbs, T))

    def _score(self, group, batch: dict, call) -> torch.Tensor:
        """[B, R] per-token results of `call(actor, micro_batches)` on every rank of `group`."""
        shards, plan = rl_micro_batches(batch, len(group), self.cfg.micro_batch_tokens(),
                                        self.tokenizer.pad_token_id)
        return gather_rows(group.scatter(call, shards), plan, *batch["response_mask_BR"].shape)

    def reference_logprobs(self, batch: dict) -> torch.Tensor:
        T, budget = self.cfg.rollout.temperature, self.cfg.micro_batch_tokens()
        with self.timer.timed("reference"):
            (ref,) = self.roles.reference.each(lambda x: x.logprobs.remote(batch, T, budget))
        return ref

    def prepare(self, batch: dict, scores: torch.Tensor) -> dict:
        a, t = self.cfg.algorithm, self.cfg.trainer
        if a.kl_coef > 0:
            batch["ref_logprobs_BR"] = self.reference_logprobs(batch)
        if t.mini_batches * t.epochs > 1:  # otherwise pi_old is the policy itself: ratio 1 at the step
            batch["old_logprobs_BR"] = self.old_logprobs(batch)
        estimator = get_advantage_estimator(a.adv_estimator)
        batch["advantages_BR"], _ = estimator(response_mask_BR=batch["response_mask_BR"], scores_B=scores,
                                              group_size=self.cfg.rollout.n, eps=a.norm_eps)
        return batch

    def loss_settings(self) -> PolicyLossSettings:
        a = self.cfg.algorithm
        return PolicyLossSettings(
            name=a.policy_loss, eps_low=a.eps_low, eps_high=a.eps_high, dual_clip=a.dual_clip,
            agg_mode=a.loss_agg, norm_len=self.cfg.rollout.episode_tokens(), kl_estimator=a.kl_estimator,
            temperature=self.cfg.rollout.temperature, rollout_is=self._rollout_is(), kl_coef=a.kl_coef)

    def update(self, batch: dict) -> dict:
        t = self.cfg.trainer
        per_rank, counts = update_shards(batch, len(self.roles.trainers), t.mini_batches, t.epochs,
                                         self.cfg.micro_batch_tokens(), self.tokenizer.pad_token_id)
        loss = self.loss_settings()
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
        stats = self.recovery.call(gens, lambda: self.transport.sync(self.roles.trainers, gens, self.version,
                                                                     wait=wait))
        self.rollouts.pending_loads += stats.pending
        return {"sync/seconds": stats.seconds, "sync/bytes": stats.num_bytes} | {
            f"sync/{k}": v for k, v in stats.phases.items()}

    # ---- one step and evaluation -------------------------------------------------------

    def step(self) -> dict:
        self.timer.reset()
        self._issued_this_step = 0
        t0 = time.perf_counter()
        batch, scores, metrics = self.collect()
        batch = self.prepare(batch, scores)
        self.prefetch()  # off-policy: the generators sample the next batches during the update
        sleep = self.cfg.generator.sleep_while_training
        if sleep:  # colocated: the engine gives its GPU memory to the trainer during the update
            self.roles.generators.each(lambda g: g.sleep.remote())
        with self.timer.timed("update"):
            metrics |= self.update(batch)
        if sleep:
            self.roles.generators.each(lambda g: g.wake_up.remote())
        with self.timer.timed("sync"):
            metrics |= self.sync()
        self.step_idx += 1
        tokens = float(batch["response_mask_BR"].sum())
        total = time.perf_counter() - t0
        metrics |= {f"timing/{k}_s": v for k, v in self.timer.seconds.items()}
        metrics |= {"timing/step_s": total, "throughput/response_tokens_per_s": tokens / max(total, 1e-9),
                    "step": self.step_idx, "policy_version": self.version}
        return metrics

    def evaluate(self) -> dict:
        """Held-out accuracy (`rlhf.loops.evaluation`), with `run.eval_samples` samples per prompt
        for avg@k / pass@k."""
        r, run = self.cfg.rollout, self.cfg.run
        t0 = time.perf_counter()
        out = held_out_metrics(self.rollouts, self.evalset, EvalSettings(
            r.max_new_tokens, r.temperature, r.top_p, run.eval_samples, tuple(run.eval_pass_k), run.seed))
        return out | {"eval/seconds": time.perf_counter() - t0, "step": self.step_idx}

