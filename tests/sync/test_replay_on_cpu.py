"""Recorded weight loads (`rlhf.sync.replay`): a load recorded once and replayed after the
sources changed leaves the model exactly as running the load again would; loads that do more
than copy views of the sources are refused."""

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from rlhf.sync.buckets import TensorMeta, unflatten
from rlhf.sync.replay import record


def tiny_qwen2() -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))


def shared_buffer(model) -> tuple[torch.Tensor, dict]:
    """One flat buffer holding a tensor per parameter (as the IPC bucket buffer), and its views."""
    metas = [TensorMeta(n, tuple(p.shape), p.dtype) for n, p in model.named_parameters()]
    flat = torch.empty(sum(m.numel for m in metas))
    return flat, unflatten(metas, flat)


def test_replayed_state_dict_load_equals_loading_again():
    model, fresh = tiny_qwen2(), tiny_qwen2()
    flat, views = shared_buffer(model)
    flat.normal_()
    recorded, why = record(lambda: model.load_state_dict(views, strict=False), list(views.values()), model)
    assert why is None and recorded.num_copies == len(views)
    flat.normal_()  # the next sync's weights, in the same memory
    recorded.replay()
    fresh.load_state_dict(views, strict=False)
    for (name, got), want in zip(model.named_parameters(), fresh.parameters()):
        assert torch.equal(got, want), name
        assert torch.equal(got, views[name]), name


class FusedQKV(torch.nn.Module):
    """A model laid out as vLLM's: q, k and v stacked in one parameter, loaded shard by shard
    into slices of it; the output weight stored transposed."""

    def __init__(self, h: int = 8):
        super().__init__()
        self.qkv = torch.nn.Parameter(torch.zeros(3 * h, h))
        self.out_t = torch.nn.Parameter(torch.zeros(h, h))
        self.h = h

    def load_weights(self, weights: dict) -> None:
        for i, name in enumerate(("q", "k", "v")):
            self.qkv.data.narrow(0, i * self.h, self.h).copy_(weights[name])
        self.out_t.data.copy_(weights["out"].t())


def qkv_sources(h: int = 8) -> tuple[torch.Tensor, dict]:
    flat = torch.randn(4 * h * h)
    return flat, unflatten([TensorMeta(n, (h, h), torch.float32) for n in ("q", "k", "v", "out")], flat)


def test_replay_of_sliced_and_transposed_copies():
    model, (flat, w) = FusedQKV(), qkv_sources()
    recorded, why = record(lambda: model.load_weights(w), list(w.values()), model)
    assert why is None
    flat.normal_()
    recorded.replay()
    assert torch.equal(model.qkv, torch.cat([w["q"], w["k"], w["v"]]))
    assert torch.equal(model.out_t, w["out"].t())


class PaddedRows(FusedQKV):
    """vLLM's embedding layout: the table padded past the vocabulary, padding rows zeroed after
    the copy (one copy overlaps the zeroed rows, so the order of the replay matters)."""

    def __init__(self, h: int = 8):
        super().__init__(h)
        self.table = torch.nn.Parameter(torch.ones(h + 4, h))

    def load_weights(self, weights: dict) -> None:
        self.table.data[:self.h + 2].copy_(weights["q"].as_strided((self.h + 2, self.h), (self.h, 1)))  # q, 2 rows of k
        self.table.data[self.h:].fill_(0)


def test_replay_keeps_the_order_of_copies_and_fills():
    model, (flat, w) = PaddedRows(), qkv_sources()
    recorded, why = record(lambda: model.load_weights(w), list(w.values()), model)
    assert why is None
    flat.normal_()
    recorded.replay()
    assert torch.equal(model.table[:8], w["q"]) and not model.table[8:].any()  # k's rows were zeroed after


def _cat(m, w):
    m.qkv.data.copy_(torch.cat([w["q"], w["k"], w["v"]]))


def _cast(m, w):
    m.out_t.data.copy_(w["out"].to(torch.float64).t())


def _host_value(m, w):
    if w["q"].sum().item() > 1e9:
        m.qkv.data.zero_()
    m.load_weights(w)


def _writes_source(m, w):
    w["out"].mul_(2.0)
    m.load_weights(w)


def _reallocates(m, w):
    m.load_weights(w)
    m.out_t.data = torch.zeros(8, 8)


def _copies_elsewhere(m, w):
    m.cache = torch.empty(8, 8)  # state the model does not register: a replay would not refresh it
    m.cache.copy_(w["q"])
    m.load_weights(w)


def _scales_in_place(m, w):
    m.load_weights(w)
    m.qkv.data.mul_(0.5)


@pytest.mark.parametrize("load,reason", [
    (_cat, "computes from a source"), (_cast, "computes from a source"), (_host_value, "computes from a source"),
    (_writes_source, "writes into the model or a source"), (_reallocates, "re-allocated"),
    (_copies_elsewhere, "does not own"), (_scales_in_place, "writes into the model"),
    (lambda m, w: None, "copied nothing"),
])
def test_loads_that_do_more_than_copy_are_refused(load, reason):
    model, (_, w) = FusedQKV(), qkv_sources()
    recorded, why = record(lambda: load(model, w), list(w.values()), model)
    assert recorded is None and reason in why


def test_a_recording_is_invalid_once_a_parameter_moved():
    model, (_, w) = FusedQKV(), qkv_sources()
    recorded, _ = record(lambda: model.load_weights(w), list(w.values()), model)
    assert recorded.valid()
    model.qkv.data = model.qkv.data.clone()
    assert not recorded.valid()
