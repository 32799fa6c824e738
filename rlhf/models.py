"""Building, caching and loading causal LMs and value models (no hub needed: tiny models are
built from a config and saved locally with a locally built tokenizer). Scoring them: rlhf.scoring."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch


log = logging.getLogger(__name__)


class ModelPathError(FileNotFoundError):
    """model.path names nothing loadable."""


def cache_root(cache_dir: str) -> Path:
    return Path(os.environ.get("RLHF_CACHE", cache_dir)).expanduser()


def content_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_model_path(path: str) -> None:
    """A local directory with config.json, a readable `.gguf` file (converted by `rlhf.gguf`), or a
    hub-style name (`org/name`) when no such directory exists."""
    from rlhf.gguf import check_gguf, is_gguf

    if is_gguf(path):
        check_gguf(path)
        return
    p = Path(path).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelPathError(f"model.path={path}: directory has no config.json (not a Hugging Face model)")
        _check_model_files(p, path)
        return
    looks_local = path.startswith((".", "/", "~")) or path.count("/") != 1
    if looks_local:
        raise ModelPathError(f"model.path={path}: no such directory")


def _check_model_files(p: Path, path: str) -> None:
    """config.json parses and every safetensors file is whole (its header covers the file)."""
    from safetensors import safe_open

    try:
        json.loads((p / "config.json").read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelPathError(f"model.path={path}: config.json is not valid JSON ({e})") from None
    for f in sorted(p.glob("*.safetensors")):
        try:
            with safe_open(str(f), "pt"):
                pass
        except Exception as e:  # noqa: BLE001  (SafetensorError and OSError alike)
            raise ModelPathError(f"model.path={path}: {f.name} is damaged or truncated ({e})") from None


def build_tiny_model(tiny, tokenizer, seed: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=tiny.hidden_size, intermediate_size=tiny.intermediate_size,
        num_hidden_layers=tiny.num_layers, num_attention_heads=tiny.num_heads,
        num_key_value_heads=tiny.num_kv_heads, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config)


def tiny_model_path(tiny, cache_dir: str, seed: int) -> str:
    """Build (once) and cache the tiny Qwen2 + byte tokenizer; returns its directory."""
    from dataclasses import asdict

    from rlhf.data.tokenizer import build_byte_tokenizer

    out = cache_root(cache_dir) / "models" / f"tiny-qwen2-{content_key(asdict(tiny), seed, 'v1')}"
    if not (out / "config.json").is_file():
        tok = build_byte_tokenizer()
        model = build_tiny_model(tiny, tok, seed)
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        _atomic_replace(tmp, out)
    return str(out)


def _atomic_replace(tmp: Path, out: Path) -> None:
    try:
        tmp.rename(out)
    except OSError:  # another process finished first; theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_dtype(name: str) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def load_causal_lm(path: str, dtype: torch.dtype, device: str = "cpu"):
    from transformers import AutoModelForCausalLM

    check_model_path(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attention_backend(device))
    return apply_kernels(model.to(device), device)


KERNELS = ("auto", "none", "liger")


def apply_kernels(model, device: str):
    """Liger's Triton kernels for the model's RMSNorm, SwiGLU MLP and rotary embedding, patched
    into the loaded instance (the output layer and loss stay ours, see `rlhf.scoring`): 1.18-1.26x
    the trainer's throughput on an H100 (BENCHMARKS.md). `RLHF_KERNELS`: `auto` (default) uses
    them on GPU where `liger-kernel` is installed (`pip install 'rlhf[liger]'`), `liger` insists,
    `none` keeps transformers' modules."""
    choice = os.environ.get("RLHF_KERNELS", "auto")
    if choice not in KERNELS:
        raise ValueError(f"RLHF_KERNELS={choice!r}: expected one of {', '.join(KERNELS)}")
    if choice == "liger" and device == "cpu":
        raise ValueError("RLHF_KERNELS=liger needs a CUDA device (Triton kernels); unset it for CPU runs")
    if choice == "none" or device == "cpu":
        return model
    try:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN, _apply_liger_kernel_to_instance
    except ImportError:
        if choice == "liger":
            raise ImportError("RLHF_KERNELS=liger: liger-kernel is not installed (pip install 'rlhf[liger]')")
        return model
    model_type = model.config.model_type
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        if choice == "liger":
            raise ValueError(f"RLHF_KERNELS=liger: Liger has no kernels for model type {model_type!r}")
        return model
    _apply_liger_kernel_to_instance(model=model, rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                    fused_linear_cross_entropy=False)
    return model


def lora_settings(model_cfg) -> dict | None:
    """The `apply_lora` arguments of config section `model` (None: full fine-tuning)."""
    if not model_cfg.lora_rank:
        return None
    return {"rank": model_cfg.lora_rank, "alpha": model_cfg.lora_alpha, "dropout": model_cfg.lora_dropout,
            "targets": list(model_cfg.lora_targets)}


def apply_lora(model, rank: int, alpha: float, dropout: float, targets: list[str]):
    """The model wrapped by peft with LoRA adapters on `targets`; only the adapters train."""
    from peft import LoraConfig, get_peft_model

    target = targets[0] if targets == ["all-linear"] else targets
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target, bias="none",
                        task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    model.enable_input_require_grads()  # gradient checkpointing needs grads flowing into frozen embeddings
    return model


def attention_backend(device: str) -> str:
    """FlashAttention-2 on GPU when the package is installed, else `rlhf.attention`'s varlen
    backend (PyTorch's variable-length kernel on packed rows, SDPA elsewhere);
    `RLHF_ATTENTION` (rlhf_varlen, sdpa, flex_attention, flash_attention_2, eager) overrides."""
    from rlhf.attention import NAME, register

    chosen = os.environ.get("RLHF_ATTENTION")
    if chosen and chosen != NAME:
        return chosen
    if device != "cpu" and not chosen:
        try:
            import flash_attn  # noqa: F401
            return "flash_attention_2"
        except ImportError:
            pass
    return register()


def uses_flash_attention(model) -> bool:
    return getattr(getattr(model, "config", None), "_attn_implementation", None) == "flash_attention_2"


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_value_model(path: str, dtype: torch.dtype, device: str = "cpu"):
    """A transformer with a scalar head (`AutoModelForSequenceClassification`, 1 label): the
    reward model reads it at a sequence's last token, the critic at every token. Loading a
    causal LM checkpoint keeps its body and starts the head from scratch."""
    from transformers import AutoModelForSequenceClassification

    check_model_path(path)
    attn = attention_backend(device)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype,
                                                               attn_implementation=attn)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = load_tokenizer(path).pad_token_id
    return apply_kernels(model.to(device), device)
