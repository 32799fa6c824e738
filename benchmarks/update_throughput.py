"""CPU: the RL update's throughput (response tokens per second of `timing/update_s`) of the
embedded DAPO default's workload, for several checkouts or settings run interleaved on the same
machine, so that a before/after comparison sees the same load.

    python benchmarks/update_throughput.py --variant before=/path/to/old/checkout: \
        --variant packed-512=.:trainer.max_tokens_per_micro_batch=512 --repeats 3

A variant is LABEL=CHECKOUT:EXTRA_ARGS (extra args comma-separated). Each run is
`python -m rlhf.recipes.dapo` from that checkout with the workload pinned (16 prompts x 8
samples, 40 new tokens, the default warm start, cached per checkout after its first run) for
--steps steps; the median over steps 2.. of batch/loss_tokens / timing/update_s is its figure.
Held-out accuracy is not the point here (evaluation is kept small).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

WORKLOAD = ["rollout.n=8", "rollout.prompts_per_step=16", "rollout.gen_prompts=24", "rollout.max_new_tokens=40",
            "trainer.lr=5e-5", "data.num_eval=32", "run.eval_every=0", "run.save_policy=false",
            "run.progress=false"]


def run(label: str, checkout: str, extra: list[str], steps: int, out: Path) -> dict:
    name = f"{label}-{len(list(out.glob(label + '-*')))}"
    env = os.environ | {"PYTHONPATH": str(Path(checkout).resolve()), "RLHF_CACHE": str(out / f"cache-{label}")}
    cmd = [sys.executable, "-m", "rlhf.recipes.dapo", *WORKLOAD, f"run.steps={steps}", *extra,
           f"run.output_dir={out}", f"run.name={name}"]
    subprocess.run(cmd, env=env, cwd=checkout, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
    steps_ = [r for r in records if "timing/update_s" in r][1:]
    rates = [r["batch/loss_tokens"] / r["timing/update_s"] for r in steps_]
    return {"variant": label, "run": name, "update_tokens_per_s": statistics.median(rates),
            "update_s_median": statistics.median(r["timing/update_s"] for r in steps_),
            "step_s_median": statistics.median(r["timing/step_s"] for r in steps_)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--variant", action="append", required=True, help="LABEL=CHECKOUT:ARG,ARG")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    out = Path(a.out or tempfile.mkdtemp(prefix="update-throughput-"))
    variants = []
    for v in a.variant:
        label, rest = v.split("=", 1)
        checkout, _, extra = rest.partition(":")
        variants.append((label, checkout, [x for x in extra.split(",") if x]))
    results: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    for _ in range(a.repeats):  # interleaved: every variant once per round
        for label, checkout, extra in variants:
            r = run(label, checkout, extra, a.steps, out)
            results[label].append(r["update_tokens_per_s"])
            print(json.dumps(r), flush=True)
    for label, rates in results.items():
        print(json.dumps({"variant": label, "update_tokens_per_s_median": statistics.median(rates),
                          "min": min(rates), "max": max(rates), "runs": len(rates)}), flush=True)


if __name__ == "__main__":
    main()
