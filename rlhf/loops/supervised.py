"""The one supervised loop that SFT, reward modelling and DPO parametrise: seeded batches of
examples (or pairs) per step, an optimizer step on the DeepSpeed ranks, held-out evaluation
every `run.eval_every` steps and before and after, and the trained model saved to the run
directory. What differs between the recipes is a `SupervisedTask` (`rlhf.loops.supervised_tasks`)."""

from __future__ import annotations

import time
from typing import Protocol

from tqdm import tqdm

from rlhf.batch import MicroBatching, micro_batching
from rlhf.data.examples import Sampler
from rlhf.loops.guards import SkippedSteps
from rlhf.startup.model import base_model
from rlhf.startup.roles import optim_settings
from rlhf.startup.session import run_session, start_logging


class SupervisedTask(Protocol):
    name: str  # the recipe, and the progress bar's label
    output: str  # directory under the run directory the trained model is saved to
    summary_names: dict  # eval metric -> summary key stem (default: the name after "eval/")

    def load(self, cfg, tokenizer) -> list:
        """The training items (examples or pairs); held-out items are kept by the task."""

    def cpus(self, cfg) -> float:
        """Ray CPUs of the task's actors."""

    def start(self, cfg, base_path: str, tokenizer, optim, layout: MicroBatching) -> None:
        """Starts the trainers (and any other actor the task needs)."""

    def train_step(self, items: list) -> dict:
        """One optimizer step on `items`; the step's `train/...` metrics (`train/skipped_steps`
        among them: 1 when the update was skipped for a non-finite loss or gradient)."""

    def evaluate(self) -> dict:
        """Held-out `eval/...` metrics of the current weights."""

    def save(self, path: str) -> None: ...

    def kill(self) -> None: ...


def run_supervised(cfg, task: SupervisedTask) -> dict:
    start_logging()
    t0 = time.perf_counter()
    path, tokenizer = base_model(cfg)
    train = task.load(cfg, tokenizer)
    t, run = cfg.trainer, cfg.run
    layout = micro_batching(t.batch_size, t.num_workers, t.micro_batch_size, one_forward=cfg.packed())
    with run_session(cfg, task.name, task.cpus(cfg)) as session:
        run_dir, tracker = session.run_dir, session.tracker
        try:
            task.start(cfg, path, tokenizer, optim_settings(cfg, layout, t.lr, t.warmup_steps, run.steps), layout)

            def evaluate(step: int) -> dict:
                record = task.evaluate() | {"step": step}
                tracker.log(record)
                return record

            before = after = evaluate(0)
            sampler = Sampler(len(train), layout.per_rank * t.num_workers, run.seed)
            skips = SkippedSteps(t.max_skipped_steps, run_dir)
            for step in tqdm(range(1, run.steps + 1), desc=task.name, disable=not run.progress):
                metrics = task.train_step([train[i] for i in sampler.next()]) | {"step": step}
                tracker.log(metrics)
                skips.check(step, metrics["train/skipped_steps"], 1, tracker.log)
                if run.eval_every and step % run.eval_every == 0 or step == run.steps:
                    after = evaluate(step)
            task.save(str(run_dir / task.output))
        finally:
            task.kill()
        summary = {"recipe": task.name, "run_dir": str(run_dir), "steps": run.steps,
                   f"{task.output}_path": str(run_dir / task.output)}
        for key in before:
            if key.startswith("eval/"):
                stem = task.summary_names.get(key, key.removeprefix("eval/"))
                summary |= {f"{stem}_before": before[key], f"{stem}_after": after[key]}
        summary["wall_s"] = round(time.perf_counter() - t0, 1)
        tracker.plot(sorted(k for k in before if k.startswith("eval/")))
        tracker.write_summary(summary)
    print(", ".join(f"{k} {v:.3f}" for k, v in summary.items() if isinstance(v, float)))
    print(f"run directory: {run_dir}")
    return summary
