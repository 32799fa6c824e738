"""Runs an RL recipe end to end: checks inputs, starts the actors, warm-starts, trains,
evaluates, and writes metrics.jsonl, curves.png and summary.json to the run directory."""

from __future__ import annotations

import logging
import time

from tqdm import tqdm

from rlhf import checkpoint
from rlhf.actors.runtime import quiet_libraries
from rlhf.checkpoint import CheckpointError
from rlhf.cluster import init_ray
from rlhf.config import to_dict
from rlhf.data.files import DataError
from rlhf.data.prompts import build_prompt_set, load_rows
from rlhf.models import check_model_path, load_tokenizer, tiny_model_path
from rlhf.recipes.rl import RLLoop
from rlhf.recipes.roles import cpus_needed, create_roles
from rlhf.recipes.warmstart import warm_start
from rlhf.sync import make_transport
from rlhf.tracking import Tracker, make_run_dir, run_summary

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


def cli(recipe: str, defaults, argv=None, run=None) -> dict:
    """`python -m rlhf.recipes.<recipe>`: bad input ends the run with one clear line, exit code 2.
    `run(cfg)` runs the recipe (default: the RL loop)."""
    import sys

    from rlhf.config import RLConfig, parse_cli
    from rlhf.models import ModelPathError
    from rlhf.reward import RewardSpecError

    cfg = parse_cli(RLConfig, defaults, f"rlhf.recipes.{recipe}", argv)
    try:
        return run(cfg) if run is not None else run_rl(cfg, recipe)
    except (DataError, ModelPathError, RewardSpecError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)


def run_rl(cfg, recipe: str, loop_cls: type = RLLoop) -> dict:
    """The whole run; continues from the newest complete checkpoint of the run directory
    when `run.resume=auto` finds one (same `run.name`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    quiet_libraries()
    t0 = time.perf_counter()
    base, tokenizer, train, evalset = check_inputs(cfg)
    run_dir = make_run_dir(cfg.run.output_dir, cfg.run.name, recipe)
    resume_from = checkpoint.find_resume(cfg.run.resume, run_dir)
    checkpoint.remove_partial(run_dir)
    state = checkpoint.load_state(resume_from) if resume_from else {}
    tracker = Tracker(run_dir, to_dict(cfg), history=state.get("history"),
                      wandb_project=cfg.run.wandb_project if cfg.run.wandb else None, wandb_id=state.get("wandb_id"))
    init_ray(cfg.ray.address, cfg.ray.num_cpus, cpus_needed(cfg))
    model_path = warm_start(cfg, base, tokenizer)
    roles = create_roles(cfg, model_path)
    try:
        tracker.log({"event": "placement"} | {g.name: g.nodes() for g in roles.groups()})
        transport = make_transport(cfg.generator, roles.trainers, roles.generators)
        tracker.log({"event": "weight_sync", "transport": type(transport).__name__})
        loop = loop_cls(cfg, roles, tokenizer, train, evalset, transport)
        if resume_from:
            roles.trainers.each(lambda a: a.load_checkpoint.remote(str(resume_from / "trainer")))
            loop.load_state_dict(state["loop"])
            loop.sync()  # generators start from the checkpoint's weights
            tracker.log({"event": "resumed", "checkpoint": str(resume_from), "step": loop.step_idx})
            log.info("resumed from %s at step %d", resume_from, loop.step_idx)
        else:
            tracker.log(loop.evaluate())
        _train(cfg, loop, tracker, run_dir, recipe)
        summary = {"recipe": recipe, "steps": cfg.run.steps, "wall_s": round(time.perf_counter() - t0, 1),
                   "model_path": model_path, "run_dir": str(run_dir),
                   "resumed_from": str(resume_from) if resume_from else None,
                   "final_reward_mean": next((r["reward/mean"] for r in reversed(tracker.history)
                                              if "reward/mean" in r), None)}
        summary |= run_summary(tracker.history)
        if cfg.run.save_policy:
            roles.trainers.each(lambda a: a.save_pretrained.remote(str(run_dir / "policy")))
            summary["policy_path"] = str(run_dir / "policy")
        tracker.plot()
        tracker.write_summary(summary)
    finally:
        roles.kill()
        tracker.close()
    _print_summary(summary)
    return summary


def _train(cfg, loop, tracker: Tracker, run_dir, recipe: str) -> None:
    run = cfg.run
    bar = tqdm(total=run.steps, initial=loop.step_idx, desc=recipe, disable=not run.progress)
    last_eval = next(r for r in reversed(tracker.history) if "eval/accuracy" in r)
    while loop.step_idx < run.steps:
        metrics = loop.step()
        step, last = loop.step_idx, loop.step_idx == run.steps
        _log_events(loop, tracker)
        tracker.log(metrics)
        if run.eval_every and step % run.eval_every == 0 or last:
            last_eval = loop.evaluate()
            _log_events(loop, tracker)
            tracker.log(last_eval)
        if run.checkpoint_every and (step % run.checkpoint_every == 0 or last):
            state = {"loop": loop.state_dict(), "history": tracker.history, "wandb_id": tracker.wandb_id}
            path = checkpoint.save(run_dir, step, loop.roles.trainers, state, run.keep_checkpoints)
            log.info("checkpoint: %s", path)
        bar.update(1)
        bar.set_postfix(reward=f"{metrics['reward/mean']:.2f}", acc=f"{last_eval['eval/accuracy']:.2f}",
                        gen=int(metrics["dynamic_sampling/gen_batches"]))
    bar.close()


def _log_events(loop, tracker: Tracker) -> None:
    for event in loop.events:
        tracker.log(event)
    loop.events.clear()


def _print_summary(s: dict) -> None:
    print(f"accuracy {s['accuracy_before']:.3f} -> {s['accuracy_after']:.3f} (best {s['accuracy_best']:.3f}) "
          f"in {s['steps']} steps, {s['wall_s']:.0f} s")
    if "phase_share" in s:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(s["phase_share"].items(), key=lambda kv: -kv[1]))
        print(f"step {s['step_seconds_mean']:.2f} s on average: {shares}; "
              f"{s['response_tokens_per_s_mean']:.0f} response tokens/s")
    if s["actor_restarts"]:
        print(f"actors restarted: {s['actor_restarts']}")
    print(f"run directory: {s['run_dir']}")
