"""An RL run end to end: checked inputs, the warm start, the actors, then steps with
evaluation and checkpoints; writes metrics.jsonl, curves.png and summary.json to the run
directory, and continues from the newest complete checkpoint when `run.resume=auto` finds one."""

from __future__ import annotations

import logging
import time

from tqdm import tqdm

from rlhf import checkpoint
from rlhf.loops.guards import SkippedSteps
from rlhf.loops.rl import RLLoop
from rlhf.loops.warmstart import warm_start
from rlhf.startup.inputs import rl_inputs
from rlhf.startup.roles import create_roles, rl_cpus
from rlhf.startup.session import RunDirError, run_session, start_logging
from rlhf.sync import make_transport
from rlhf.tracking import Tracker, run_summary

log = logging.getLogger("rlhf")


def run_rl(cfg, recipe: str, loop_cls: type = RLLoop) -> dict:
    start_logging()
    t0 = time.perf_counter()
    inputs = rl_inputs(cfg)
    with run_session(cfg, recipe, rl_cpus(cfg), resume=lambda run_dir: _resume_point(cfg, run_dir),
                     load_state=checkpoint.load_state) as session:
        run_dir, tracker, resume_from = session.run_dir, session.tracker, session.resume_from
        if inputs.skipped_rows:
            tracker.log({"event": "skipped_rows"} | inputs.skipped_rows)
        model_path = warm_start(cfg, inputs.base_path, inputs.tokenizer, whole_gpu=cfg.placement.mode != "none")
        roles = create_roles(cfg, model_path)
        try:
            tracker.log({"event": "placement"} | {g.name: g.nodes() for g in roles.groups()})
            transport = make_transport(cfg.generator, roles.trainers, roles.generators)
            tracker.log({"event": "weight_sync", "transport": type(transport).__name__})
            loop = loop_cls(cfg, roles, inputs.tokenizer, inputs.train, inputs.evalset, transport)
            if resume_from:
                roles.trainers.each(lambda a: a.load_checkpoint.remote(str(resume_from / "trainer")))
                loop.load_state_dict(session.state["loop"])
                loop.sync()  # generators start from the checkpoint's weights
                tracker.log({"event": "resumed", "checkpoint": str(resume_from), "step": loop.step_idx})
                log.info("resumed from %s at step %d", resume_from, loop.step_idx)
            else:
                if cfg.model.quantization != "none":  # generators hold the full base; the policy is its 4-bit copy
                    loop.sync()
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
    _print_summary(summary)
    return summary


def _resume_point(cfg, run_dir):
    """The checkpoint to continue from (None: a fresh run); partial checkpoints are removed."""
    resume_from = checkpoint.find_resume(cfg.run.resume, run_dir)
    checkpoint.remove_partial(run_dir)
    if resume_from is not None and checkpoint.load_state(resume_from)["loop"]["step"] >= cfg.run.steps:
        raise RunDirError(f"run directory {run_dir} holds a run that finished {cfg.run.steps} steps (checkpoint "
                          f"{resume_from.name}): raise run.steps to train further, or choose a new run.name")
    return resume_from


def _train(cfg, loop, tracker: Tracker, run_dir, recipe: str) -> None:
    run = cfg.run
    bar = tqdm(total=run.steps, initial=loop.step_idx, desc=recipe, disable=not run.progress)
    last_eval = next(r for r in reversed(tracker.history) if "eval/accuracy" in r)
    skips = SkippedSteps(cfg.trainer.max_skipped_steps, run_dir)
    while loop.step_idx < run.steps:
        metrics = loop.step()
        step, last = loop.step_idx, loop.step_idx == run.steps
        _log_events(loop, tracker)
        tracker.log(metrics)
        skips.check(step, metrics["actor/skipped_steps"], cfg.trainer.mini_batches * cfg.trainer.epochs, tracker.log)
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
