"""GPU: one GRPO step end to end (generation + reward + log-probs + update + weight sync), our
recipe versus TRL's GRPOTrainer, both with vLLM colocated on one GPU, same model, prompts,
batch, group size and fixed lengths.

    python benchmarks/grpo_step.py ours --size 0.5b     # one JSON line each
    python benchmarks/grpo_step.py trl  --size 0.5b

Model: Qwen2.5-shaped, random weights, byte-level tokenizer with a ChatML template (so both
frameworks tokenize the same prompts identically). Prompts: the built-in addition task, as
chat messages. Responses: exactly --response-len tokens (EOS ignored). Batch: --prompts
prompts x --n samples, one optimizer step per batch (micro-batches: ours packed by --max-tokens,
TRL --micro-batch rows), no KL
term (no reference model), lr 1e-6, bf16. Reported: the median step time over steps 2..S
(step 1 includes compilation and allocator warm-up). TRL is installed for the benchmark only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from gpu_rollout_sync import SIZES, build  # noqa: E402


def ours(a) -> dict:
    from rlhf.recipes import grpo

    os.environ["RLHF_LOGPROBS"] = a.logprobs  # shipped to the trainer actors (rlhf.cluster)

    out = f"/tmp/grpo-bench-{os.getpid()}"
    summary = grpo.main([
        f"model.path={build(a.size)}", "model.dtype=bfloat16", "warmstart.steps=0", "generator.backend=vllm",
        "placement.mode=colocate", f"generator.gpu_memory_utilization={a.gpu_memory_utilization}",
        f"rollout.prompts_per_step={a.prompts}", f"rollout.gen_prompts={a.prompts}", f"rollout.n={a.n}",
        f"rollout.max_new_tokens={a.response_len}", "rollout.ignore_eos=true", "algorithm.kl_coef=0",
        f"trainer.max_tokens_per_micro_batch={a.max_tokens}", "trainer.lr=1e-6", "trainer.zero_stage=2",
        f"run.steps={a.steps}", "run.eval_every=0", "data.num_eval=8", "run.save_policy=false",
        "run.progress=false", f"run.output_dir={out}", "run.name=bench"])
    rows = [json.loads(line) for line in open(os.path.join(summary["run_dir"], "metrics.jsonl"))]
    steps = [r for r in rows if "timing/step_s" in r]
    times = [r["timing/step_s"] for r in steps[1:]]
    phases = {k: statistics.median(r[k] for r in steps[1:]) for k in steps[-1] if k.startswith("timing/")}
    return {"framework": "rlhf", "size": a.size, "logprobs": a.logprobs,
            "step_seconds_median": statistics.median(times), "step_seconds": times, "phases": phases,
            "trainer_peak_gib": max(r.get("memory/trainer_peak_gib", 0.0) for r in steps)}


def trl(a) -> dict:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    for k, v in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29533").items():
        os.environ.setdefault(k, v)  # colocated vLLM joins a one-process torch.distributed world
    import re

    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlhf.data.synthetic import task_rows

    path = build(a.size)
    rows = task_rows("addition", "train")[:a.prompts * a.steps]
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}], "answer": r["answer"]}
                              for r in rows])

    def boxed_answer(completions, answer, **_):  # a regex check: cheaper than our math-verify reward
        return [float(re.search(r"\\boxed\{([^}]*)\}", c[0]["content"]) is not None
                      and re.search(r"\\boxed\{([^}]*)\}", c[0]["content"])[1].strip() == str(g)) for c, g in
                zip(completions, answer)]

    class StepTimes(TrainerCallback):  # optimizer step to optimizer step, generation included
        def __init__(self):
            self.ends = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kw):
            torch.cuda.synchronize()
            self.ends.append(time.perf_counter())

    batch = a.prompts * a.n
    config = GRPOConfig(
        output_dir=f"/tmp/trl-bench-{os.getpid()}", per_device_train_batch_size=a.micro_batch,
        gradient_accumulation_steps=batch // a.micro_batch, num_generations=a.n, max_completion_length=a.response_len,
        use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=a.gpu_memory_utilization, bf16=True,
        beta=0.0, learning_rate=1e-6, max_steps=a.steps, logging_steps=1, report_to=[], save_strategy="no",
        temperature=1.0, generation_kwargs={"ignore_eos": True}, seed=0)
    timer = StepTimes()
    trainer = GRPOTrainer(model=path, reward_funcs=boxed_answer, args=config, train_dataset=data,
                          processing_class=AutoTokenizer.from_pretrained(path), callbacks=[timer])
    trainer.train()
    times = [b - a for a, b in zip(timer.ends[1:], timer.ends[2:])]  # steps 2..S
    return {"framework": "trl", "size": a.size, "step_seconds_median": statistics.median(times),
            "step_seconds": times, "trl_version": __import__("trl").__version__}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("framework", choices=["ours", "trl"])
    p.add_argument("--size", choices=list(SIZES), default="0.5b")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--response-len", type=int, default=256)
    p.add_argument("--micro-batch", type=int, default=16, help="TRL: rows per forward")
    p.add_argument("--max-tokens", type=int, default=16384, help="ours: tokens per packed micro-batch")
    p.add_argument("--logprobs", default="logits", choices=["logits", "blocks", "fused"],
                   help="ours: RLHF_LOGPROBS (fused: no logits kept, for budgets whose logits do not fit)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    args = p.parse_args()
    settings = {"prompts": args.prompts, "n": args.n, "response_len": args.response_len,
                "micro_batch": args.micro_batch if args.framework == "trl" else None,
                "max_tokens": args.max_tokens if args.framework == "ours" else None,
                "device": torch.cuda.get_device_name(), "date": time.strftime("%Y-%m-%d")}
    try:
        result = {"ours": ours, "trl": trl}[args.framework](args)
    except Exception as e:  # a run that failed (out of memory, say) gets its line too
        last = (str(e).strip().splitlines() or [""])[-1]
        print(json.dumps({"framework": args.framework, "error": f"{type(e).__name__}: {last[:300]}"} | settings),
              flush=True)
        raise
    print(json.dumps(result | settings), flush=True)
