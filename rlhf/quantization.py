"""QLoRA (Dettmers et al. 2023): the frozen base of a LoRA-trained policy held in 4 bits through
bitsandbytes (NF4 or FP4, optionally double-quantised, computing in `compute_dtype`), the
adapters trained in full precision on top. Generators and saved checkpoints get the merged,
dequantised weights. bitsandbytes (0.50 here) has 4-bit kernels for CUDA and for CPU."""

from __future__ import annotations

from typing import Optional

import torch

QUANT_TYPES = ("none", "nf4", "fp4")


def quantization_settings(model_cfg) -> Optional[dict]:
    """The 4-bit settings of config section `model` (None: the base is not quantised)."""
    if model_cfg.quantization == "none":
        return None
    return {"quant_type": model_cfg.quantization, "double_quant": model_cfg.double_quant,
            "compute_dtype": model_cfg.compute_dtype}


def require_bitsandbytes() -> None:
    """Start-up check: the package that holds the 4-bit kernels imports (it names the setting)."""
    try:
        import bitsandbytes  # noqa: F401  (the import is the check)
    except ImportError as e:
        raise ImportError(f"model.quantization needs bitsandbytes ({e}): pip install 'rlhf[qlora]', or set "
                          "model.quantization=none") from None


def bnb_config(settings: dict, dtype: torch.dtype):
    from transformers import BitsAndBytesConfig

    compute = dtype if settings["compute_dtype"] == "auto" else getattr(torch, settings["compute_dtype"])
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=settings["quant_type"],
                              bnb_4bit_use_double_quant=settings["double_quant"], bnb_4bit_compute_dtype=compute)


def load_quantized(path: str, dtype: torch.dtype, device: str, settings: dict, attn: str):
    """The causal LM with its linear layers in 4 bits, ready for adapters (norms kept in fp32,
    inputs requiring grad, as peft's k-bit preparation does)."""
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn,
                                                     quantization_config=bnb_config(settings, dtype),
                                                     device_map={"": device})
    except Exception as e:  # noqa: BLE001  (bitsandbytes raises several kinds when a device has no kernel)
        raise RuntimeError(f"model.quantization={settings['quant_type']}: bitsandbytes could not load the base in "
                           f"4 bits on {device} ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    for module in model.modules():
        # On CPUs with AVX512-BF16 an inference forward repacks the 4-bit weights in place into a
        # layout of its own (bf16 state), which dequantisation and training do not expect: keep one layout.
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def is_quantized(param: torch.Tensor) -> bool:
    return getattr(param, "quant_state", None) is not None


def full_shape_dtype(param: torch.Tensor) -> tuple[tuple, torch.dtype]:
    """Shape and dtype of the weight a quantised parameter stands for (itself otherwise)."""
    if is_quantized(param):
        return tuple(param.quant_state.shape), param.quant_state.dtype
    return tuple(getattr(param, "ds_shape", param.shape)), param.dtype


def dequantized(param: torch.Tensor) -> torch.Tensor:
    """The full-precision weight of a 4-bit parameter (the parameter itself otherwise)."""
    if not is_quantized(param):
        return param.detach()
    import bitsandbytes.functional as bnbf

    return bnbf.dequantize_4bit(param.data, param.quant_state)


def save_plain_checkpoint(module, weights: dict, path: str) -> None:
    """A Hugging Face checkpoint of full-precision `weights` (merged, dequantised) for a model
    loaded in 4 bits: its config without the quantisation marker, the weights as safetensors."""
    import copy
    from pathlib import Path

    from safetensors.torch import save_file

    config = copy.deepcopy(module.config)
    for key in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, key):
            delattr(config, key)
    Path(path).mkdir(parents=True, exist_ok=True)
    config.save_pretrained(path)
    if getattr(module, "generation_config", None) is not None:
        module.generation_config.save_pretrained(path)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(Path(path) / "model.safetensors"),
              metadata={"format": "pt"})
