"""Runs an RL recipe end to end: checks inputs, starts the actors, warm-starts, trains,
evaluates, and writes metrics.jsonl, curves.png and summary.json to the run directory."""

from __future__ import annotations

import logging
import time

from tqdm import tqdm

from rlhf.actors.runtime import quiet_libraries
from rlhf.cluster import init_ray
from rlhf.config import to_dict
from rlhf.data.files import DataError
from rlhf.data.prompts import build_prompt_set, load_rows
from rlhf.models import check_model_path, load_tokenizer, tiny_model_path
from rlhf.recipes.rl import RLLoop
from rlhf.recipes.roles import cpus_needed, create_roles
from rlhf.recipes.warmstart import warm_start
from rlhf.sync import make_transport
from rlhf.tracking import Tracker, make_run_dir

log = logging.getLogger("rlhf")


def check_inputs(cfg):
    """Everything that can be checked before any actor starts: model, data, reward functions."""
    from rlhf.reward import load_reward
    from rlhf.reward.runner import RESERVED

    if cfg.model.path:
        check_model_path(cfg.model.path)
        base = cfg.model.path
    else:
        base = tiny_model_path(cfg.model.tiny, cfg.warmstart.cache_dir, cfg.run.seed)
    tokenizer = load_tokenizer(base)
    sets = []
    for split in ("train", "eval"):
        rows, source = load_rows(cfg.data, split)
        if split == "eval":
            rows = rows[:cfg.data.num_eval]
        sets.append(build_prompt_set(rows, tokenizer, cfg.data, source))
    for spec in list(cfg.reward.fns) + list(cfg.reward.eval_fns):
        fn = load_reward(spec)
        missing = [c for c in fn.required_columns if c not in sets[0].columns and c not in RESERVED]
        if missing:
            raise DataError(f"reward {spec!r} needs dataset column(s) {missing}; the data has "
                            f"{sorted(sets[0].columns)}")
    return base, tokenizer, sets[0], sets[1]


def cli(recipe: str, defaults, argv=None) -> dict:
    """`python -m rlhf.recipes.<recipe>`: bad input ends the run with one clear line, exit code 2."""
    import sys

    from rlhf.config import RLConfig, parse_cli
    from rlhf.models import ModelPathError
    from rlhf.reward import RewardSpecError

    cfg = parse_cli(RLConfig, defaults, f"rlhf.recipes.{recipe}", argv)
    try:
        return run_rl(cfg, recipe)
    except (DataError, ModelPathError, RewardSpecError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)


def run_rl(cfg, recipe: str) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    quiet_libraries()
    t0 = time.perf_counter()
    base, tokenizer, train, evalset = check_inputs(cfg)
    run_dir = make_run_dir(cfg.run.output_dir, cfg.run.name, recipe)
    tracker = Tracker(run_dir, to_dict(cfg))
    init_ray(cfg.ray.address, cfg.ray.num_cpus, cpus_needed(cfg))
    model_path = warm_start(cfg, base, tokenizer)
    roles = create_roles(cfg, model_path)
    try:
        loop = RLLoop(cfg, roles, tokenizer, train, evalset, make_transport(cfg.generator.backend))
        before = loop.evaluate()
        tracker.log(before)
        bar = tqdm(range(cfg.run.steps), desc=recipe, disable=not cfg.run.progress)
        last_eval = before
        for step in bar:
            metrics = loop.step()
            tracker.log(metrics)
            if cfg.run.eval_every and (step + 1) % cfg.run.eval_every == 0 or step + 1 == cfg.run.steps:
                last_eval = loop.evaluate()
                tracker.log(last_eval)
            bar.set_postfix(reward=f"{metrics['reward/mean']:.2f}", acc=f"{last_eval['eval/accuracy']:.2f}",
                            gen=int(metrics["dynamic_sampling/gen_batches"]))
        summary = {
            "recipe": recipe, "accuracy_before": before["eval/accuracy"], "accuracy_after": last_eval["eval/accuracy"],
            "steps": cfg.run.steps, "wall_s": round(time.perf_counter() - t0, 1), "model_path": model_path,
            "run_dir": str(run_dir),
            "final_reward_mean": next((r["reward/mean"] for r in reversed(tracker.history) if "reward/mean" in r), None),
        }
        if cfg.run.save_policy:
            roles.trainers.each(lambda a: a.save_pretrained.remote(str(run_dir / "policy")))
            summary["policy_path"] = str(run_dir / "policy")
        tracker.plot()
        tracker.write_summary(summary)
    finally:
        roles.kill()
        tracker.close()
    print(f"accuracy {summary['accuracy_before']:.3f} -> {summary['accuracy_after']:.3f} "
          f"in {summary['steps']} steps, {summary['wall_s']:.0f} s")
    print(f"run directory: {run_dir}")
    return summary
