"""The embedded DAPO default over several seeds, each from an empty cache.

    python benchmarks/embedded_default_seeds.py [--seeds 0 1 2] [--out results.json] [-- key=value ...]

Runs `python -m rlhf.recipes.dapo run.seed=S` once per seed, one after another, each with its
own empty RLHF_CACHE (so the tiny model and the warm start are built and trained again) and
run directory. `run.seed` changes the model's initialisation, the warm start and the rollouts.
Prints one JSON line: per seed the held-out accuracy before and after RL, the gain and the
command's wall time; then the mean, worst and best gain.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


def run_seed(seed: int, extra: list[str], root: Path) -> dict:
    cache, out = root / f"cache{seed}", root / "runs"
    env = os.environ | {"RLHF_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "rlhf.recipes.dapo", f"run.seed={seed}", f"run.output_dir={out}",
           f"run.name=seed{seed}", "run.progress=false", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"seed {seed}: exit {proc.returncode}")
    s = json.loads((out / f"seed{seed}" / "summary.json").read_text())
    return {"seed": seed, "accuracy_before": s["accuracy_before"], "accuracy_after": s["accuracy_after"],
            "gain": round(s["accuracy_after"] - s["accuracy_before"], 3), "accuracy_best": s["accuracy_best"],
            "wall_s": round(wall, 1), "run_wall_s": s["wall_s"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", help="also write the JSON result to this file")
    p.add_argument("overrides", nargs="*", help="extra key=value overrides for every run (after --)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="rlhf-seeds-") as tmp:
        runs = []
        for seed in args.seeds:
            runs.append(run_seed(seed, args.overrides, Path(tmp)))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    gains = [r["gain"] for r in runs]
    result = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpus": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), "overrides": args.overrides, "runs": runs,
              "gain_mean": round(sum(gains) / len(gains), 3), "gain_worst": min(gains), "gain_best": max(gains),
              "wall_s_max": max(r["wall_s"] for r in runs)}
    line = json.dumps(result)
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")


if __name__ == "__main__":
    main()
