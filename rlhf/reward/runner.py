"""Scoring a batch with several reward functions, isolated from the trainer.

Work goes to a pool of worker processes in chunks. In a worker, each call has a time limit
(signal.alarm: a worker runs calls on its main thread); in the parent, each chunk has a wall
limit, so a call stuck in C code, a segfault or an `os._exit` costs that chunk its scores,
never the run: the pool is rebuilt and those items get the default reward. Every failure
is counted per function and logged once per function with an example.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import multiprocessing
import signal
import threading
import time
from typing import Optional

from rlhf.reward.loading import absolute_spec, load_reward
from rlhf.reward.registry import RewardFn

log = logging.getLogger(__name__)
RESERVED = ("response_length", "truncated")

_WORKER_FNS: list[RewardFn] = []


class _CallTimeout(Exception):
    pass


def _init_worker(specs: list[str]) -> None:
    global _WORKER_FNS
    _WORKER_FNS = [load_reward(s) for s in specs]


def _with_alarm(seconds: float, fn, *args, **kwargs):
    """Run fn with a SIGALRM deadline when on the main thread (no limit elsewhere)."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        return fn(*args, **kwargs)

    def on_alarm(signum, frame):
        raise _CallTimeout(f"timed out after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn(*args, **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


FLOAT32_MAX = 3.4028234663852886e38  # scores become float32 tensors: beyond this they are inf


def _finite(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    x = float(value)
    if not (math.isfinite(x) and abs(x) <= FLOAT32_MAX):
        raise ValueError(f"{what} is {value} (not a finite float32 number)")
    return x


def _normalise(value) -> tuple[float, dict]:
    """(score, extra metrics) of one reward call; a score or metric that is not a finite number
    is a failed call (it would poison the advantages and then the weights)."""
    if isinstance(value, dict):
        if "score" not in value:
            raise TypeError(f"a reward dict needs a 'score' key, got keys {sorted(value)}")
        extras = {k: _finite(v, f"metric {k!r}") for k, v in value.items() if k != "score"}
        return _finite(value["score"], "the score"), extras
    if isinstance(value, (int, float)) and not isinstance(value, (bool, complex)):
        return _finite(value, "the reward"), {}
    raise TypeError(f"a reward must return a number or a dict with 'score', got {type(value).__name__}")


def score_chunk(fns: list[RewardFn], items: list[tuple], timeout_s: float, in_worker: bool = False) -> list[list]:
    """For each function, per item: (score, extras) or ("error", message). In a worker process
    anything a reward raises is its failure, KeyboardInterrupt and SystemExit included; in the
    caller's own process a KeyboardInterrupt is the user's and stops the run."""
    out = []
    for f in fns:
        if f.batched:
            out.append(_score_batched(f, items, timeout_s, in_worker))
            continue
        results = []
        for prompt, completion, cols in items:
            try:
                results.append(_normalise(_with_alarm(timeout_s, f, prompt, completion, **cols)))
            except BaseException as e:  # noqa: BLE001  (user code: anything can come out)
                _reraise_if_ours(e, in_worker)
                results.append(("error", f"{type(e).__name__}: {e}"))
        out.append(results)
    return out


def _reraise_if_ours(e: BaseException, in_worker: bool) -> None:
    if isinstance(e, KeyboardInterrupt) and not in_worker:
        raise e


def _score_batched(f: RewardFn, items: list[tuple], timeout_s: float, in_worker: bool) -> list:
    prompts = [p for p, _, _ in items]
    completions = [c for _, c, _ in items]
    columns = {k: [cols[k] for _, _, cols in items] for k in items[0][2]} if items else {}
    try:
        values = _with_alarm(timeout_s * max(1, len(items)), f, prompts, completions, **columns)
        if len(values) != len(items):
            raise ValueError(f"batched reward returned {len(values)} values for {len(items)} items")
    except BaseException as e:  # noqa: BLE001
        _reraise_if_ours(e, in_worker)
        return [("error", f"{type(e).__name__}: {e}")] * len(items)
    out = []
    for v in values:  # one bad value fails its own item, not the batch
        try:
            out.append(_normalise(v))
        except (TypeError, ValueError) as e:
            out.append(("error", f"{type(e).__name__}: {e}"))
    return out


def _worker_score(items: list[tuple], timeout_s: float) -> list[list]:
    return score_chunk(_WORKER_FNS, items, timeout_s, in_worker=True)


class RewardRunner:
    """`score(...)` -> (weighted total per item, metrics). `num_workers=0` scores in-process."""

    def __init__(self, specs: list[str], weights: Optional[list[float]] = None, *, default: float = 0.0,
                 timeout_s: float = 10.0, num_workers: int = 1, chunk_size: int = 64):
        if weights is not None and len(weights) != len(specs):
            raise ValueError(f"{len(weights)} reward weights for {len(specs)} reward functions: give one each")
        self.fns = [load_reward(s) for s in specs]  # fails fast, naming the spec
        self.specs = [absolute_spec(s) for s in specs]
        self.weights = [float(w) for w in weights] if weights is not None else [1.0] * len(specs)
        self.default, self.timeout_s = default, timeout_s
        self.num_workers, self.chunk_size = num_workers, chunk_size
        self._pool: Optional[cf.ProcessPoolExecutor] = None
        self._logged: set[str] = set()
        self.failures = {f.name: 0 for f in self.fns}

    # ---- pool --------------------------------------------------------------------------

    def _get_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(self.num_workers, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_init_worker, initargs=(self.specs,))
        return self._pool

    def _reset_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for proc in list(getattr(pool, "_processes", {}).values()):  # stuck workers must die
            proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._reset_pool()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- scoring -----------------------------------------------------------------------

    def score(self, prompts: list[str], completions: list[str], columns: Optional[dict] = None,
              response_lengths: Optional[list[int]] = None, truncated: Optional[list[bool]] = None):
        n = len(completions)
        columns = dict(columns or {})
        if response_lengths is not None:
            columns["response_length"] = list(response_lengths)
        if truncated is not None:
            columns["truncated"] = list(truncated)
        items = [(prompts[i], completions[i], {k: v[i] for k, v in columns.items()}) for i in range(n)]
        chunks = [items[i:i + self.chunk_size] for i in range(0, n, self.chunk_size)]
        per_chunk = self._run_in_process(chunks) if self.num_workers == 0 else self._run_in_pool(chunks)
        results = [[r for chunk in per_chunk for r in chunk[j]] for j in range(len(self.fns))]
        return self._combine(results, items)

    def _run_in_process(self, chunks):
        return [score_chunk(self.fns, c, self.timeout_s) for c in chunks]

    def _run_in_pool(self, chunks):
        pool = self._get_pool()
        futures = [pool.submit(_worker_score, c, self.timeout_s) for c in chunks]
        out = []
        deadline = time.monotonic()
        for i, chunk in enumerate(chunks):
            # a chunk may take as long as its calls may, plus a worker's start-up
            deadline = max(deadline, time.monotonic()) + self.timeout_s * len(chunk) * len(self.fns) + 60.0
            try:
                out.append(futures[i].result(timeout=max(0.0, deadline - time.monotonic())))
            except (cf.TimeoutError, cf.process.BrokenProcessPool) as e:
                reason = "timed out" if isinstance(e, cf.TimeoutError) else "worker process died"
                out.append([[("error", f"{reason} (chunk of {len(chunk)})")] * len(chunk) for _ in self.fns])
                self._reset_pool()  # kills stuck workers; the chunks not yet collected go to a new pool
                pool = self._get_pool()
                futures[i + 1:] = [pool.submit(_worker_score, c, self.timeout_s) for c in chunks[i + 1:]]
        return out

    def _combine(self, results: list[list], items: list[tuple]):
        n = len(items)
        total = [0.0] * n
        metrics: dict[str, float] = {}
        for f, w, res in zip(self.fns, self.weights, results):
            scores, failures, timeouts, extras = [], 0, 0, {}
            for i, r in enumerate(res):
                if r[0] == "error":
                    failures += 1
                    timeouts += "timed out" in r[1]
                    self._log_failure(f.name, r[1], items[i])
                    scores.append(self.default)
                    continue
                scores.append(r[0])
                for k, v in r[1].items():
                    extras.setdefault(k, []).append(v)
            for i, s in enumerate(scores):
                total[i] += w * s
            self.failures[f.name] += failures
            metrics[f"reward/{f.name}/mean"] = sum(scores) / max(1, n)
            metrics[f"reward/{f.name}/failures"] = float(failures)
            # a wall-clock limit is the one place where the machine's load can change a score
            metrics[f"reward/{f.name}/timeouts"] = float(timeouts)
            for k, vals in extras.items():
                metrics[f"reward/{f.name}/{k}"] = sum(vals) / len(vals)
        return total, metrics

    def _log_failure(self, name: str, message: str, item: tuple) -> None:
        if name in self._logged:
            return
        self._logged.add(name)
        prompt, completion, _ = item
        log.warning("reward %r failed (%s); it scores %s and failures are counted in reward/%s/failures. "
                    "Example: prompt=%r completion=%r", name, message, self.default, name, prompt[-200:],
                    completion[:200])
