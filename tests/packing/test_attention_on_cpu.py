"""The varlen attention backend: a packed row is cut at its position restarts; anything else
(padded rows, generation with a cache) is plain SDPA."""

import torch
from transformers import AutoModelForCausalLM

from rlhf.attention import _boundaries, _RowCache, register
from rlhf.config import RLConfig
from rlhf.models import tiny_model_path


def test_boundaries_of_a_packed_row():
    assert _boundaries(torch.tensor([[0, 1, 2, 0, 1, 0]])).tolist() == [0, 3, 5, 6]
    assert _boundaries(torch.tensor([[0, 1, 2, 3]])) is None  # one sequence: plain SDPA
    assert _boundaries(torch.tensor([[3, 4, 0, 1]])) is None  # not a packed row from its start


def test_boundaries_are_found_once_per_row_tensor():
    """Every layer of a forward gets the same position ids: their boundaries are found once."""
    cache = _RowCache()
    row = torch.tensor([[0, 1, 2, 0, 1]])
    cu, longest = cache.get(row)
    assert cu.tolist() == [0, 3, 5] and longest == 3
    row[0, 3] = 3  # the same tensor: the first answer is reused, not recomputed
    assert cache.get(row)[0].tolist() == [0, 3, 5]
    other = torch.tensor([[0, 1, 0, 1, 2, 3]])  # a new row is recomputed
    assert cache.get(other)[0].tolist() == [0, 2, 6] and cache.get(other)[1] == 4


def test_varlen_backend_equals_sdpa_packed_padded_and_generating(tmp_path):
    path = tiny_model_path(RLConfig().model.tiny, str(tmp_path), seed=0)
    varlen = AutoModelForCausalLM.from_pretrained(path, attn_implementation=register()).eval()
    sdpa = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa").eval()
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(0, 256, (n,), generator=g) for n in (7, 3, 12)]
    ids = torch.cat(seqs)[None]
    pos = torch.cat([torch.arange(len(s)) for s in seqs])[None]
    with torch.no_grad():
        packed = varlen(input_ids=ids, position_ids=pos, use_cache=False).logits[0]
        alone = torch.cat([sdpa(input_ids=s[None], use_cache=False).logits[0] for s in seqs])
        assert torch.allclose(packed, alone, atol=1e-5)
        prompts = torch.full((2, 6), 256)
        prompts[0, 2:], prompts[1] = seqs[0][:4], seqs[2][:6]
        attn = (prompts != 256).long()
        out = [m.generate(prompts, attention_mask=attn, max_new_tokens=5, do_sample=False, pad_token_id=256)
               for m in (varlen, sdpa)]
    assert torch.equal(out[0], out[1])
