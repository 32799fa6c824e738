"""Running episodes on a generator: generation and environment steps alternate per episode,
and episodes advance independently.

The first turn of every episode is one engine call for all prompts with `n` samples each --
exactly the single-turn generation, so a single-turn environment is that call and nothing
else. After it, each episode's environment step runs in a thread (tools run in child
processes); whenever steps come back, the episodes that are ready are generated together as
the next per-turn batch, while episodes still waiting on a tool keep waiting without holding
anyone. Steps that finish within `gather_s` of the first are batched together, so with
steps faster than that the batches (and the samples) are the same on every run.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
from typing import TYPE_CHECKING
from rlhf.envs.episode import Episode, ObservationRenderer
from rlhf.envs.interface import End, Turn
from rlhf.envs.tools import ToolRunner

if TYPE_CHECKING:
    from rlhf.batch import Completion

log = logging.getLogger(__name__)
TURN_SEED_STRIDE = 7919  # per-turn batch k samples with seed + k * stride


@dataclasses.dataclass
class EpisodeSettings:
    max_turns: int = 1
    max_episode_tokens: int = 16  # response tokens of an episode, model and observation tokens together
    tool_timeout_s: float = 10.0
    tool_memory_mb: int = 1024
    gather_s: float = 0.5  # after the first step of a round comes back, wait this long for the others


class EpisodeRunner:
    def __init__(self, engine, tokenizer, env_cls: type, settings: EpisodeSettings, eos_id: int, threads: int = 16):
        self.engine, self.tokenizer, self.env_cls, self.settings = engine, tokenizer, env_cls, settings
        self.renderer = ObservationRenderer(tokenizer, eos_id) if env_cls.multi_turn else None
        self.tool_runner = ToolRunner(env_cls.tools, settings.tool_timeout_s, settings.tool_memory_mb) \
            if env_cls.tools else None
        self.pool = cf.ThreadPoolExecutor(threads, thread_name_prefix="env-step") if env_cls.multi_turn else None
        self._warned: set[str] = set()

    def run(self, prompt_ids: list[list[int]], rows: list[dict], s) -> list[Completion]:
        """`s.n` episodes per prompt, prompt-major, like `Engine.generate`."""
        first = self.engine.generate(prompt_ids, s)
        if not self.env_cls.multi_turn:
            return first
        episodes = [self._start(i, prompt_ids[i // s.n], rows[i // s.n]) for i in range(len(first))]
        pending: dict = {}
        for ep, c in zip(episodes, first):
            self._after_turn(ep, c, s, pending)
        batch_idx = 1
        while pending:
            ready = self._gather(pending)
            if not ready:
                continue
            turn_s = dataclasses.replace(s, n=1, seed=s.seed + TURN_SEED_STRIDE * batch_idx,
                                         max_new_tokens=min(s.max_new_tokens, max(ep.room for ep in ready)))
            batch_idx += 1
            for ep, c in zip(ready, self.engine.generate([ep.context for ep in ready], turn_s)):
                self._after_turn(ep, c, s, pending)
        for ep in episodes:
            ep.env.close()
        return [ep.completion() for ep in episodes]

    def _start(self, index: int, prompt_ids: list[int], row: dict) -> Episode:
        env = self.env_cls()
        if self.tool_runner is not None:
            env.tool_runner = self.tool_runner
        env.start(row)
        return Episode(index, list(prompt_ids), env, self.settings.max_episode_tokens)

    def _after_turn(self, ep: Episode, c: Completion, s, pending: dict) -> None:
        """Append the sampled turn (cut to the episode's room), then end the episode or hand it
        to its environment."""
        ids, lps, finished = c.token_ids, c.logprobs, c.finished
        if len(ids) > ep.room:
            ids, lps, finished = ids[:ep.room], (lps[:ep.room] if lps is not None else None), False
        ep.add_turn(ids, lps)
        if not finished:  # cut by the turn's or the episode's token limit
            ep.end(finished=False)
            return
        turn = Turn(self.tokenizer.decode(ids, skip_special_tokens=True), list(ids), ep.turns - 1)
        pending[self.pool.submit(self._step, ep, turn)] = ep

    def _step(self, ep: Episode, turn: Turn) -> None:
        """The environment's answer to a turn, applied to the episode (in a worker thread)."""
        try:
            result = ep.env.step(turn)
            if isinstance(result, End):
                ep.end(finished=True, reward=result.reward, info=result.info)
                return
            ep.tool_calls += result.tool_calls
            ep.tool_errors += result.tool_errors
            obs = self.renderer.ids(result.messages)
        except Exception as e:  # noqa: BLE001  (the environment's own bug ends its episode, not the run)
            ep.env_error = f"{type(e).__name__}: {e}"
            self._warn(ep.env_error)
            ep.end(finished=False)
            return
        if ep.turns >= self.settings.max_turns or len(obs) >= ep.room:
            ep.end(finished=False)  # no turn left to answer the observation
            return
        ep.add_observation(obs)

    def _gather(self, pending: dict) -> list[Episode]:
        """Episodes whose environment step came back and that continue, in episode order."""
        cf.wait(pending, return_when=cf.FIRST_COMPLETED)
        cf.wait(pending, timeout=self.settings.gather_s)
        done = [f for f in pending if f.done()]
        for f in done:
            f.result()  # a failure of the runner itself surfaces here
        eps = [pending.pop(f) for f in done]
        return sorted((ep for ep in eps if not ep.done), key=lambda ep: ep.index)

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning("environment step failed (%s); the episode ends, counted in env/step_errors", message)
