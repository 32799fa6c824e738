"""GPU memory per role, from a model config (no weights needed).

    python -m rlhf.tools.memory MODEL [--world 8] [--zero 3] [--offload] [--lora-rank 64]
                                [--quant-bits 16] [--tp 1] [--kv-tokens 262144] ...

MODEL is a model directory or config.json path. The parameter count P is exact (the model
is built on PyTorch's meta device). Per GPU:

- trainer (mixed-precision AdamW, ZeRO paper, Rajbhandari et al. 2020, section 3):
  bf16 weights 2P, bf16 gradients 2P, fp32 master weights + Adam moments 12P. ZeRO-1
  shards the 12P over the data-parallel world N, ZeRO-2 also the gradients, ZeRO-3 also the
  weights; `--offload` moves the 12P to CPU memory. LoRA: the frozen base is 2P (Q-bit
  when quantised), and only the adapter's T parameters carry 2 + 2 + 12 bytes.
  Activations are not included (they depend on batch, length and checkpointing).
- generator (vLLM): weights at Q bits over the tensor-parallel size, plus the KV cache for
  `--kv-tokens` tokens: 2 (K and V) x layers x kv_heads x head_dim x 2 bytes per token.
- reference and reward model: weights only, at Q bits (inference).
- the inference rule of thumb M = (P x 4 bytes) / (32 / Q) x 1.2 (weights at Q bits plus
  20% overhead).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

GIB = 2**30


@dataclass
class ModelShape:
    params: int
    layers: int
    kv_heads: int
    head_dim: int
    hidden: int


def model_shape(model: str) -> ModelShape:
    """Exact parameter count and KV-cache geometry of a Hugging Face causal LM config."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    p = Path(model).expanduser()
    if p.is_file() and p.name.endswith(".json"):
        p = p.parent
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"{model}: no config.json (give a model directory or its config.json)")
    config = AutoConfig.from_pretrained(p)
    with torch.device("meta"):
        params = sum(t.numel() for t in AutoModelForCausalLM.from_config(config).parameters())
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return ModelShape(params, config.num_hidden_layers, getattr(config, "num_key_value_heads", heads), head_dim,
                      config.hidden_size)


def lora_params(shape: ModelShape, rank: int, matrices_per_layer: int = 7) -> int:
    """Adapter parameters for rank-r LoRA on the 7 projection matrices of each layer,
    approximated as square hidden x hidden matrices: r * (d_in + d_out) each."""
    return shape.layers * matrices_per_layer * rank * 2 * shape.hidden


def estimate(shape: ModelShape, *, world: int = 1, zero: int = 0, offload: bool = False, lora_rank: int = 0,
             quant_bits: int = 16, tp: int = 1, kv_tokens: int = 0) -> dict:
    """Bytes per GPU for each role; see the module docstring for the formulas."""
    P, N = shape.params, world
    base_bytes = P * quant_bits / 8
    if lora_rank:
        T = lora_params(shape, lora_rank)
        weights, grads, optim = base_bytes + 2 * T, 2 * T, 12 * T
        sharded_weights = 2 * T  # ZeRO shards what it trains; the frozen base stays whole
    else:
        weights, grads, optim = 2 * P, 2 * P, 12 * P
        sharded_weights = weights
    if zero >= 1:
        optim /= N
    if zero >= 2:
        grads /= N
    if zero >= 3:
        weights = weights - sharded_weights + sharded_weights / N
    cpu_optim = 0.0
    if offload:
        cpu_optim, optim = optim, 0.0
    kv_per_token = 2 * shape.layers * shape.kv_heads * shape.head_dim * 2
    return {
        "params": P,
        "trainer_weights": weights, "trainer_grads": grads, "trainer_optimizer": optim,
        "trainer_total": weights + grads + optim, "trainer_cpu_optimizer": cpu_optim,
        "generator_weights": base_bytes / tp, "generator_kv_cache": kv_per_token * kv_tokens / tp,
        "generator_total": (base_bytes + kv_per_token * kv_tokens) / tp, "kv_bytes_per_token": kv_per_token,
        "reference": base_bytes, "reward_model": base_bytes,
        "rule_of_thumb": P * 4 / (32 / quant_bits) * 1.2,
    }


def format_report(est: dict, args) -> str:
    g = lambda b: f"{b / GIB:8.2f} GiB"  # noqa: E731
    lines = [
        f"parameters: {est['params'] / 1e9:.3f} B   world={args.world} zero={args.zero} offload={args.offload} "
        f"lora_rank={args.lora_rank} quant_bits={args.quant_bits} tp={args.tp}",
        f"trainer     per GPU {g(est['trainer_total'])}  (weights {g(est['trainer_weights']).strip()}, grads "
        f"{g(est['trainer_grads']).strip()}, optimizer {g(est['trainer_optimizer']).strip()}; activations extra)",
    ]
    if args.offload:
        lines.append(f"            CPU     {g(est['trainer_cpu_optimizer'])}  (offloaded optimizer states)")
    lines += [
        f"generator   per GPU {g(est['generator_total'])}  (weights {g(est['generator_weights']).strip()}, KV cache "
        f"{g(est['generator_kv_cache']).strip()} for {args.kv_tokens} tokens at "
        f"{est['kv_bytes_per_token'] / 1024:.0f} KiB/token)",
        f"reference   per GPU {g(est['reference'])}",
        f"reward model per GPU{g(est['reward_model'])}",
        f"rule of thumb M = (P x 4 bytes) / (32 / Q) x 1.2 = {est['rule_of_thumb'] / GIB:.2f} GiB (inference, Q={args.quant_bits})",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m rlhf.tools.memory", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="model directory or config.json")
    ap.add_argument("--world", type=int, default=1, help="data-parallel trainer GPUs (ZeRO shards over them)")
    ap.add_argument("--zero", type=int, choices=(0, 1, 2, 3), default=0, help="ZeRO stage")
    ap.add_argument("--offload", action="store_true", help="optimizer states in CPU memory (ZeRO-Offload)")
    ap.add_argument("--lora-rank", type=int, default=0, help="LoRA rank (0: full fine-tuning)")
    ap.add_argument("--quant-bits", type=int, default=16, choices=(4, 8, 16, 32), help="bits per frozen weight")
    ap.add_argument("--tp", type=int, default=1, help="generator tensor-parallel size")
    ap.add_argument("--kv-tokens", type=int, default=0, help="tokens held in the generator's KV cache")
    ap.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = ap.parse_args(argv)
    est = estimate(model_shape(args.model), world=args.world, zero=args.zero, offload=args.offload,
                   lora_rank=args.lora_rank, quant_bits=args.quant_bits, tp=args.tp, kv_tokens=args.kv_tokens)
    print(json.dumps(est) if args.json else format_report(est, args))
    return est


if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}")
