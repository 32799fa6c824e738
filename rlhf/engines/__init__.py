"""The generator's engines: transformers `generate` (`hf`: CPU, tests) and vLLM (`vllm`: GPU,
and vLLM's CPU build). Both implement `Engine`; the generator role only talks to that."""

from __future__ import annotations

from typing import Optional

from rlhf.engines.hf import HFEngine
from rlhf.engines.interface import Engine, SamplingSettings
from rlhf.engines.vllm import VLLMEngine

__all__ = ["Engine", "HFEngine", "SamplingSettings", "VLLMEngine", "make_engine"]


def make_engine(backend: str, model_path: str, dtype: str, device: str, seed: int,
                vllm: Optional[dict] = None) -> Engine:
    """`backend` "hf" on `device`, or "vllm" (which places itself) with the `vllm` settings
    of `VLLMEngine`; `seed` seeds vLLM's sampling."""
    if backend == "vllm":
        return VLLMEngine(model_path, dtype, seed, **(vllm or {}))
    if backend == "hf":
        return HFEngine(model_path, dtype, device)
    raise ValueError(f"generator.backend={backend!r}: use 'hf' or 'vllm'")
