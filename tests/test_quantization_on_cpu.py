"""QLoRA on CPU (bitsandbytes 0.50 has 4-bit kernels for CPU): a 4-bit base under LoRA trains,
exports merged, dequantised weights, and saves a plain checkpoint that scores like the trainer."""

import json
from pathlib import Path

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes")

from rlhf.actors.deepspeed_rank import OptimSettings  # noqa: E402
from rlhf.config import ConfigError, SFTConfig, load_config  # noqa: E402
from rlhf.data.sequences import encode, pad_batch  # noqa: E402
from rlhf.models import load_causal_lm, load_tokenizer, tiny_model_path  # noqa: E402
from rlhf.scoring import sequence_logps  # noqa: E402
from rlhf.recipes.sft import sft_defaults  # noqa: E402
from rlhf.startup.roles import create_trainers  # noqa: E402


def test_quantization_settings_are_checked_at_load():
    with pytest.raises(ConfigError, match=r"model\.quantization=nf4 .* set model\.lora_rank"):
        load_config(SFTConfig, sft_defaults(), ["model.quantization=nf4"])
    with pytest.raises(ConfigError, match=r"trainer\.zero_stage=3"):
        load_config(SFTConfig, sft_defaults(), ["model.quantization=fp4", "model.lora_rank=4", "trainer.zero_stage=3"])


@pytest.mark.parametrize("quant_type", ["nf4"])
def test_a_4bit_base_trains_its_adapters_and_exports_full_weights(ray_local, tmp_path, quant_type):
    cfg = load_config(SFTConfig, sft_defaults(), [f"model.quantization={quant_type}", "model.lora_rank=8",
                                                 "model.lora_alpha=16"])
    path = tiny_model_path(cfg.model.tiny, str(tmp_path), seed=0)
    tok = load_tokenizer(path)
    examples = [encode([{"role": "user", "content": f"What is {a} + 1?"}], f"\\boxed{{{a + 1}}}", tok)
                for a in range(8)]
    batch = pad_batch(examples, tok.pad_token_id)
    trainers = create_trainers(cfg, path, OptimSettings(lr=1e-2, micro_batch_size=8), lora=True)
    try:
        before = trainers.each(lambda t: t.named_weights.remote())[0]
        tokens = int(batch["loss_mask_BT"][:, 1:].sum())
        losses = [trainers.each(lambda t: t.train_sft.remote([batch], tokens))[0]["sft/loss"] for _ in range(3)]
        after = trainers.each(lambda t: t.named_weights.remote())[0]
        trainer_logps = trainers.each(lambda t: t.sequence_logps.remote(batch))[0]
        trainers.each(lambda t: t.save_pretrained.remote(str(tmp_path / "policy")))
    finally:
        trainers.kill()
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    plain = load_causal_lm(path, torch.float32)
    # full shapes and dtypes, the 4-bit error only (NF4/FP4 keep about 3 significant bits)
    for name, w in plain.state_dict().items():
        if name in before:
            assert before[name].shape == w.shape and before[name].dtype == torch.float32, name
    q = "model.layers.0.self_attn.q_proj.weight"
    assert 0 < float((before[q] - plain.state_dict()[q]).abs().max()) < 0.5 * float(plain.state_dict()[q].abs().max())
    assert not torch.equal(before[q], after[q])  # the merged adapters moved the exported weight
    saved = json.loads((tmp_path / "policy" / "config.json").read_text())
    assert "quantization_config" not in saved  # a plain checkpoint of the dequantised, merged weights
    reloaded = load_causal_lm(str(tmp_path / "policy"), torch.float32)
    with torch.no_grad():
        assert torch.allclose(sequence_logps(reloaded, batch, "cpu"), trainer_logps, atol=2e-3)


@pytest.mark.slow
def test_a_grpo_run_on_a_4bit_base_syncs_dequantised_weights(ray_local, tmp_path):
    """The RL path: the generator receives the merged, dequantised weights after each update."""
    from safetensors.torch import load_file

    from rlhf.recipes import grpo

    summary = grpo.main(["warmstart.steps=30", "data.num_eval=16", "rollout.prompts_per_step=4",
                         "rollout.gen_prompts=4",
                         "rollout.n=4", "rollout.max_new_tokens=12", "run.progress=false", "run.eval_every=0",
                         "run.steps=2", "model.quantization=fp4", "model.double_quant=false", "model.lora_rank=8",
                         "trainer.lr=1e-3", f"run.output_dir={tmp_path}", "run.name=q"])
    records = [json.loads(line) for line in (tmp_path / "q" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "reward/mean" in r]
    assert len(steps) == 2 and all(r["sync/bytes"] > 0 and r["actor/skipped_steps"] == 0 for r in steps)
    weights = load_file(str(tmp_path / "q" / "policy" / "model.safetensors"))
    base = load_file(str(Path(summary["model_path"]) / "model.safetensors"))
    assert sorted(weights) == sorted(base)  # plain names and shapes: generators load them as they are
    assert all(weights[k].shape == base[k].shape and weights[k].dtype == base[k].dtype for k in base)
