"""The memory estimator's numbers for a Qwen2.5-7B-sized config against hand arithmetic."""

import json

import pytest

from rlhf.tools.memory import GIB, main

QWEN25_7B = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
    "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
    "tie_word_embeddings": False, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
}

# Hand count: embeddings and untied LM head 152064*3584 each; per layer q 3584*3584 + 3584 bias,
# k and v 3584*512 + 512 each, o 3584*3584, MLP 3*3584*18944, two norms 2*3584; final norm 3584.
PER_LAYER = (3584 * 3584 + 3584) + 2 * (3584 * 512 + 512) + 3584 * 3584 + 3 * 3584 * 18944 + 2 * 3584
P = 2 * 152064 * 3584 + 28 * PER_LAYER + 3584  # 7,615,616,512


@pytest.fixture()
def model_dir(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN25_7B))
    return str(tmp_path)


def test_parameter_count_is_exact(model_dir, capsys):
    est = main([model_dir, "--json"])
    assert est["params"] == P == 7_615_616_512
    assert json.loads(capsys.readouterr().out)["params"] == P


def test_trainer_zero_stages(model_dir):
    # full fine-tuning: 2P weights + 2P grads + 12P optimizer = 16P bytes on one GPU
    assert main([model_dir, "--json"])["trainer_total"] == 16 * P
    # ZeRO-2 on 8 GPUs: 2P + (2P + 12P) / 8
    assert main([model_dir, "--zero", "2", "--world", "8", "--json"])["trainer_total"] == pytest.approx(2 * P + 14 * P / 8)
    # ZeRO-3 on 8 GPUs: 16P / 8 = 2P = 14.19 GiB
    z3 = main([model_dir, "--zero", "3", "--world", "8", "--json"])["trainer_total"]
    assert z3 == pytest.approx(2 * P) and z3 / GIB == pytest.approx(14.186, abs=1e-3)
    # ZeRO-3 + offload: the 12P/8 optimizer states leave the GPU
    off = main([model_dir, "--zero", "3", "--world", "8", "--offload", "--json"])
    assert off["trainer_total"] == pytest.approx(4 * P / 8) and off["trainer_cpu_optimizer"] == pytest.approx(12 * P / 8)


def test_lora_trains_only_the_adapter(model_dir):
    est = main([model_dir, "--lora-rank", "64", "--json"])
    T = 28 * 7 * 64 * 2 * 3584  # 7 matrices per layer, r * (d_in + d_out), square approximation
    assert est["trainer_total"] == pytest.approx(2 * P + 2 * T + 2 * T + 12 * T)
    q4 = main([model_dir, "--lora-rank", "64", "--quant-bits", "4", "--json"])  # QLoRA-style frozen base
    assert q4["trainer_weights"] == pytest.approx(P / 2 + 2 * T)


def test_generator_kv_cache_and_rule_of_thumb(model_dir, capsys):
    est = main([model_dir, "--tp", "2", "--kv-tokens", "100000", "--json"])
    assert est["kv_bytes_per_token"] == 2 * 28 * 4 * 128 * 2  # K and V, layers, kv heads, head dim, bf16
    assert est["generator_total"] == pytest.approx((2 * P + 57344 * 100000) / 2)
    assert est["reference"] == est["reward_model"] == 2 * P
    assert est["rule_of_thumb"] == pytest.approx(P * 4 / (32 / 16) * 1.2)  # 17.02 GiB
    main([model_dir, "--quant-bits", "4"])
    out = capsys.readouterr().out
    assert "rule of thumb M = (P x 4 bytes) / (32 / Q) x 1.2 = 4.26 GiB" in out  # P*4/8*1.2


def test_missing_config_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        main([str(tmp_path)])
