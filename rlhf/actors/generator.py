"""Rollout generator role. The driver only sees `Generator`; the engine behind it is
transformers `generate` (CPU, tests) or vLLM (GPU), both in `rlhf.engines`. Episodes of a
multi-turn environment (`rlhf.envs`) run here, next to the engine: only finished episodes
travel back to the driver."""

from __future__ import annotations

import torch

from rlhf.actors.runtime import setup_process
from rlhf.batch import Completion
from rlhf.engines import SamplingSettings, make_engine
from rlhf.envs import EpisodeRunner, EpisodeSettings, load_environment
from rlhf.models import load_tokenizer
from rlhf.sync.endpoints import WeightReceiver

__all__ = ["Generator", "SamplingSettings"]


class Generator(WeightReceiver):
    """Rollout role: `generate`, `logprobs`, and `sleep`/`wake_up` for colocation; the weight
    loads of every transport come with `WeightReceiver`."""

    def __init__(self, model_path: str, backend: str = "hf", dtype: str = "auto", seed: int = 0,
                 threads: int = 0, rank: int = 0, vllm: dict | None = None, env: str = "single_turn",
                 episodes: EpisodeSettings | None = None):
        device = setup_process(seed + 1000 * rank, threads)
        self.rank = rank
        self.weights_version = 0
        self.engine = make_engine(backend, model_path, dtype, device, seed + 1000 * rank, vllm)
        env_cls = load_environment(env)
        tokenizer = load_tokenizer(model_path) if env_cls.multi_turn else None
        self.episodes = EpisodeRunner(self.engine, tokenizer, env_cls, episodes or EpisodeSettings(),
                                      self.engine.eos_id)

    def generate(self, prompt_ids: list[list[int]], settings: SamplingSettings,
                 rows: list[dict] | None = None) -> list[Completion]:
        """`settings.n` completions (episodes, with a multi-turn environment started from each
        prompt's dataset row in `rows`) per prompt, grouped by prompt (prompt-major order), each
        tagged with the version of the weights that sampled it."""
        completions = self.episodes.run(prompt_ids, rows or [{} for _ in prompt_ids], settings)
        for c in completions:
            c.version = self.weights_version
        return completions

    def logprobs(self, batch: dict, temperature: float = 1.0) -> torch.Tensor:
        return self.engine.logprobs(batch, temperature)

    def sleep(self) -> None:
        self.engine.sleep()

    def wake_up(self) -> None:
        self.engine.wake_up()
