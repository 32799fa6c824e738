"""The collect phase of an RL step: generation batches scored and shaped until the training
batch holds `rollout.prompts_per_step` groups.

With dynamic sampling (DAPO eq. 11) groups whose rewards are all equal are dropped and more
are generated, up to `max_gen_batches` generation batches; if still short, dropped groups
fill the batch with their loss masked out (logged as `dynamic_sampling/padded_groups`).
Off-policy, groups sampled by weights more than `staleness` versions old are never trained on.
"""

from __future__ import annotations

from typing import Callable

import torch

from rlhf.algorithms import groups_with_signal, overlong_penalty
from rlhf.batch import Completion, collate, num_rows
from rlhf.envs import episode_metrics
from rlhf.metrics import mean_dicts


def collect_batch(cfg, rollouts, next_request: Callable, pad_id: int, version: int, staleness: int):
    """(batch, scores_B, metrics); `next_request()` gives the next generation request."""
    r, a = cfg.rollout, cfg.algorithm
    ds = a.dynamic_sampling
    want, n = r.prompts_per_step, r.n
    kept, dropped, metrics_list = [], [], []
    gen_batches = stale = 0
    while len(kept) < want and (gen_batches < ds.max_gen_batches or not ds.enabled):
        req = next_request()
        completions = rollouts.wait(req)
        scores, metrics = rollouts.score(req.prompts, completions, n)
        scores, shaping = _shape(cfg, scores, completions)
        metrics |= shaping
        keep_G = groups_with_signal(scores, n) if ds.enabled else torch.ones(len(req.prompts), dtype=torch.bool)
        for g in range(len(req.prompts)):
            group = (req.prompts.prompt_ids[g], completions[g * n:(g + 1) * n], scores[g * n:(g + 1) * n])
            if min(c.version for c in group[1]) < version - staleness:
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
    comps = [c for _, cs, _ in groups for c in cs]
    batch = collate([p for p, cs, _ in groups for _ in cs], comps, pad_id)
    scores = torch.cat([s for _, _, s in groups])
    if padded:
        batch["response_mask_BR"][len(kept) * n:] = 0
    if a.overlong.filter:  # DAPO overlong filtering: truncated samples carry no loss
        batch["response_mask_BR"][~torch.tensor([c.finished for c in comps])] = 0
    metrics = mean_dicts(metrics_list)
    metrics |= {"dynamic_sampling/gen_batches": gen_batches, "dynamic_sampling/padded_groups": padded,
                "dynamic_sampling/filtered_frac": len(dropped) / max(1, len(kept) + len(dropped))}
    ages = torch.tensor([version - c.version for c in comps], dtype=torch.float32)
    metrics |= {"offpolicy/staleness_mean": float(ages.mean()), "offpolicy/staleness_max": float(ages.max()),
                "offpolicy/stale_groups_dropped": stale}
    return batch, scores, metrics | _response_metrics(batch, scores, comps)


def _shape(cfg, scores: torch.Tensor, completions: list[Completion]):
    """DAPO's overlong reward shaping (eq. 13), when on; L_max is the episode's token budget
    (`rollout.max_new_tokens` single-turn)."""
    o = cfg.algorithm.overlong
    if not o.shaping:
        return scores, {}
    lengths = torch.tensor([len(c.token_ids) for c in completions], dtype=torch.float32)
    penalty = overlong_penalty(lengths, max_len=cfg.rollout.episode_tokens(), cache_len=o.cache_len,
                               penalty_factor=o.penalty_factor)
    return scores + penalty, {"reward/overlong_penalty": float(penalty.mean())}


def _response_metrics(batch: dict, scores: torch.Tensor, completions: list[Completion]) -> dict:
    lengths = torch.tensor([len(c.token_ids) for c in completions], dtype=torch.float32)
    metrics = {"reward/mean": float(scores.mean()), "reward/std": float(scores.std()),
               "response/length_mean": float(lengths.mean()), "response/length_max": float(lengths.max()),
               "response/truncated_frac": float(sum(not c.finished for c in completions) / len(completions)),
               "batch/sequences": num_rows(batch), "batch/loss_tokens": float(batch["response_mask_BR"].sum())}
    return metrics | episode_metrics(completions)  # tools/calls, tools/use_rate, ... of multi-turn episodes
