"""GPU: a colocated full fine-tuning RL step with the vLLM engine asleep during the update
(`generator.sleep_while_training=true`), on one GPU, at a size where the engine awake and the
trainer at its peak do not fit together.

    python benchmarks/sleep_wake.py --size 1.5b --gpu-memory-utilization 0.5 --max-tokens 16384   # one JSON line

On an 80 GB GPU that is 1.5B: the engine takes 40 GB awake and the update peaks at 75 GB. 3B does
not start: its trainer holds about 71 GB (bf16 weights, fp32 master copy, gradients, AdamW state)
before the engine is created, and an engine asleep still needs its memory free when it starts.

What it measures (free device memory from `torch.cuda.mem_get_info` in the driver process):
- how much memory the engine gives back when it sleeps (level 1: weights to host, KV cache freed)
  and takes again when it wakes;
- one GRPO step through `RLLoop.step` (generate, sleep, DeepSpeed update, wake up, CUDA IPC sync),
  with the trainer's peak (`memory/trainer_peak_gib`) and its cached blocks after the update;
- after the step, the engine's log-probs of a fixed batch against the trainer's (they must agree
  to bf16 noise), and how far the update moved them (it must move them by more than that).
The reward is a deterministic hash of the completion text (random-weight models score 0 on the
built-in task, which would leave every advantage 0 and the weights unchanged).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib

GiB = 2**30


def hash_reward(prompt: str, completion: str, **_) -> float:
    """A reward in [0, 1) that differs between completions (only so that advantages are not 0)."""
    return (zlib.crc32(completion.encode()) % 1000) / 1000.0


def main(a) -> dict:
    import ray
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gpu_rollout_sync import build

    from rlhf.config import RLConfig, load_config
    from rlhf.loops.rl import RLLoop
    from rlhf.loops.warmstart import warm_start
    from rlhf.recipes.grpo import grpo_defaults
    from rlhf.startup.inputs import rl_inputs
    from rlhf.startup.roles import create_roles
    from rlhf.sync import make_transport

    def free() -> float:
        torch.cuda.synchronize()
        return torch.cuda.mem_get_info()[0] / GiB

    total = torch.cuda.mem_get_info()[1] / GiB
    path = build(a.size)
    ray.init(num_cpus=8, num_gpus=1, include_dashboard=False)
    free_empty = free()
    overrides = [f"model.path={path}", "model.dtype=bfloat16", "warmstart.steps=0", "run.progress=false",
                 "generator.backend=vllm", "placement.mode=colocate", "generator.sleep_while_training=true",
                 f"generator.gpu_memory_utilization={a.gpu_memory_utilization}",
                 f"generator.enforce_eager={str(a.enforce_eager).lower()}", "generator.max_model_len=1024",
                 "algorithm.kl_coef=0", f"trainer.lr={a.lr}", f"trainer.zero_stage={a.zero_stage}",
                 f"trainer.offload={str(a.offload).lower()}",
                 f"trainer.max_tokens_per_micro_batch={a.max_tokens}",
                 f"rollout.prompts_per_step={a.prompts}", f"rollout.gen_prompts={a.prompts}", f"rollout.n={a.n}",
                 f"rollout.max_new_tokens={a.response_len}", "rollout.ignore_eos=true",
                 f"reward.fns=[{os.path.abspath(__file__)}:hash_reward]"]
    cfg = load_config(RLConfig, grpo_defaults(), overrides)
    inputs = rl_inputs(cfg)
    t0 = time.perf_counter()
    roles = create_roles(cfg, warm_start(cfg, inputs.base_path, inputs.tokenizer))
    start_s = time.perf_counter() - t0
    out: dict = {"size": a.size, "gpu_memory_utilization": a.gpu_memory_utilization, "zero_stage": a.zero_stage,
                 "offload": a.offload, "max_tokens": a.max_tokens, "total_GiB": total, "free_before_roles_GiB": free_empty,
                 "roles_start_s": start_s}
    try:
        trainer, gen = roles.trainers.actors[0], roles.generators.actors[0]
        transport = make_transport(cfg.generator, roles.trainers, roles.generators)
        loop = RLLoop(cfg, roles, inputs.tokenizer, inputs.train, inputs.evalset, transport)
        batch, _, _ = loop.collect()  # a fixed batch, sampled by the engine before any update
        out["batch_tokens"] = int(batch["attention_mask_BT"].sum())
        engine_before, trainer_before = ray.get([gen.logprobs.remote(batch, 1.0), trainer.logprobs.remote(batch, 1.0)])
        out["free_awake_GiB"] = free()
        t = time.perf_counter()
        ray.get(gen.sleep.remote())
        out["sleep_s"] = time.perf_counter() - t
        out["free_asleep_GiB"] = free()
        t = time.perf_counter()
        ray.get(gen.wake_up.remote())
        out["wake_s"] = time.perf_counter() - t
        out["free_woken_GiB"] = free()
        out["released_by_sleep_GiB"] = out["free_asleep_GiB"] - out["free_awake_GiB"]
        out["taken_by_wake_GiB"] = out["free_woken_GiB"] - out["free_asleep_GiB"]

        reserved = lambda: ray.get(trainer.__ray_call__.remote(  # noqa: E731  (the trainer process's allocator)
            lambda self: (torch.cuda.memory_reserved() / GiB, torch.cuda.memory_allocated() / GiB)))
        release = lambda: ray.get(trainer.__ray_call__.remote(lambda self: torch.cuda.empty_cache()))  # noqa: E731
        update = loop.update

        def update_then_release(b):  # what the engine's wake-up needs when both do not fit awake
            m = update(b)
            out["trainer_reserved_after_update_GiB"], out["trainer_allocated_after_update_GiB"] = reserved()
            if a.release_cache:
                release()
                out["trainer_reserved_after_release_GiB"] = reserved()[0]
            return m

        loop.update = update_then_release
        t = time.perf_counter()
        metrics = loop.step()  # generate, sleep, update, wake up, sync
        out["step_wall_s"] = time.perf_counter() - t
        out["free_after_step_GiB"] = free()
        keep = ("timing/", "sync/", "memory/", "actor/grad_norm", "actor/pg_loss", "reward/mean", "actor/loss")
        out["step_metrics"] = {k: v for k, v in metrics.items() if k.startswith(keep) and isinstance(v, (int, float))}
        engine, trainer_after = ray.get([gen.logprobs.remote(batch, 1.0), trainer.logprobs.remote(batch, 1.0)])
        mask = batch["response_mask_BR"] > 0
        diff = (engine - trainer_after).abs()[mask]
        out |= {"logprob_mean_abs_diff": float(diff.mean()), "logprob_max_abs_diff": float(diff.max()),
                "before_engine_vs_trainer_mean": float((engine_before - trainer_before).abs()[mask].mean()),
                "moved_by_update_mean": float((engine - engine_before).abs()[mask].mean())}
        peak = out["step_metrics"].get("memory/trainer_peak_gib")
        engine_awake = out["free_asleep_GiB"] - out["free_awake_GiB"] + 0.0
        if peak is not None:  # would the engine awake (what sleep releases) and the trainer's peak fit together?
            out["engine_released_plus_trainer_peak_GiB"] = engine_awake + peak
        out["match"] = bool(diff.mean() < 0.03 and out["moved_by_update_mean"] > 2 * float(diff.mean()))
    finally:
        roles.kill()
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="1.5b")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    p.add_argument("--enforce-eager", type=lambda s: s == "true", default=True)
    p.add_argument("--zero-stage", type=int, default=0)
    p.add_argument("--offload", type=lambda s: s == "true", default=False)
    p.add_argument("--max-tokens", type=int, default=16384)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--response-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--release-cache", type=lambda s: s == "true", default=True,
                   help="empty the trainer's CUDA cache after the update, before the engine wakes")
    args = p.parse_args()
    import torch

    result = main(args) | {"device": torch.cuda.get_device_name(), "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(result), flush=True)
