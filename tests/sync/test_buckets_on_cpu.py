"""Pure pieces of the weight transports: bucket plans, flattening, the trainer's export names
(LoRA merged as peft merges it) and the choice of transport from the actors' GPUs."""

import pytest
import torch

from rlhf.sync import choose_transport
from rlhf.sync.buckets import TensorMeta, bucket_nbytes, flatten, plan_buckets, unflatten
from rlhf.sync.export import WeightExport, hf_sources, merged_lora_weight
from rlhf.sync.ipc import check_colocated


def metas(*specs):
    return [TensorMeta(f"w{i}", shape, dtype) for i, (shape, dtype) in enumerate(specs)]


def test_buckets_keep_order_respect_size_and_split_on_dtype():
    f32, bf16 = torch.float32, torch.bfloat16
    ms = metas(((10,), f32), ((20,), f32), ((5,), f32), ((100,), f32), ((4,), bf16), ((4,), bf16), ((1,), f32))
    plan = plan_buckets(ms, bucket_bytes=128)  # 32 fp32 elements
    assert [[m.name for m in b] for b in plan] == [["w0", "w1"], ["w2"], ["w3"], ["w4", "w5"], ["w6"]]
    assert [bucket_nbytes(b) for b in plan] == [120, 20, 400, 16, 4]  # w3 alone: larger than a bucket
    assert [m for b in plan for m in b] == ms
    with pytest.raises(ValueError, match="positive"):
        plan_buckets(ms, 0)


def test_flatten_then_unflatten_gives_back_every_tensor():
    ms = metas(((2, 3), torch.float32), ((4,), torch.float32), ((1, 1, 2), torch.float32))
    tensors = {m.name: torch.randn(m.shape) for m in ms}
    flat = flatten(ms, tensors)
    assert flat.shape == (12,)
    back = unflatten(ms, flat)
    assert all(torch.equal(back[m.name], tensors[m.name]) for m in ms)
    back["w1"][0] = 7.0  # views into the received buffer: no copy
    assert flat[6] == 7.0
    with pytest.raises(ValueError, match="13 elements"):
        unflatten(ms, torch.zeros(13))


def _tiny_lora_model(rank=4, alpha=8.0):
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = get_peft_model(Qwen2ForCausalLM(cfg), LoraConfig(r=rank, lora_alpha=alpha, target_modules=["q_proj", "down_proj"]))
    for n, p in model.named_parameters():  # peft starts B at zero; make the adapters matter
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)
    return model


def test_export_names_and_merged_lora_weights_equal_peft_merge():
    model = _tiny_lora_model()
    names = [n for n, _ in model.named_parameters()]
    sources = hf_sources(names)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert sources[q] == ("base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight",
                          "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight",
                          "base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight")
    assert sources["model.layers.0.self_attn.q_proj.bias"] == ("base_model.model.model.layers.0.self_attn.q_proj.base_layer.bias",)
    assert sources["model.embed_tokens.weight"] == ("base_model.model.model.embed_tokens.weight",)

    base_q = dict(model.named_parameters())[sources[q][0]].detach().clone()
    export = WeightExport(model, zero3=False)
    exported = {}
    for bucket in plan_buckets(export.metas(), 4096):
        with export.gathered(bucket) as tensors:
            exported |= {n: t.clone() for n, t in tensors.items()}
    reference = {n: p.detach() for n, p in model.merge_and_unload().named_parameters()}
    assert sorted(exported) == sorted(reference)
    for n in reference:
        assert torch.allclose(exported[n], reference[n], atol=1e-6), n
    assert (exported[q] - base_q).abs().max() > 0.1  # the adapters are in the exported weight


def test_merged_lora_weight_formula():
    base, a, b = torch.ones(3, 2), torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0], [0.0], [-1.0]])
    assert torch.equal(merged_lora_weight(base, a, b, 0.5),
                       torch.tensor([[1.5, 2.0], [1.0, 1.0], [0.5, 0.0]]))  # 1 + 0.5 * b @ a, by hand
    assert merged_lora_weight(base.bfloat16(), a, b, 0.5).dtype == torch.bfloat16


@pytest.mark.parametrize("trainers,generators,expected", [
    ([None], [[]], "object_store"),                  # CPU
    (["g0"], [["g0"]], "ipc"),                       # one GPU, colocated
    (["g0", "g1"], [["g0"], ["g1"]], "ipc"),         # colocated on every GPU
    (["g0", "g1"], [["g2"], ["g3", "g4"]], "broadcast"),  # split, one engine tensor parallel
    (["g0", "g1"], [["g1"], ["g2"]], "broadcast"),   # apart from trainer rank 0 is enough for NCCL
    (["g0", "g1"], [["g0"], ["g2"]], "object_store"),  # a mix
    (["g0"], [["g1"], ["g1"]], "object_store"),      # two engines on one GPU: NCCL would see it twice
    (["g0"], [["g1"], []], "object_store"),          # a generator on CPU
])
def test_transport_follows_the_placement(trainers, generators, expected):
    assert choose_transport(trainers, generators) == expected


def test_ipc_needs_every_generator_on_a_trainer_gpu():
    check_colocated(["a", "b"], [["a"], ["b"]])
    with pytest.raises(RuntimeError, match=r"generator 1 runs on GPU\(s\) \['c'\]"):
        check_colocated(["a", "b"], [["a"], ["c"]])
    with pytest.raises(RuntimeError, match="generator 0 has no GPU"):
        check_colocated(["a"], [[]])
