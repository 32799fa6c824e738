"""Building, caching, loading and scoring causal LMs (no hub needed: tiny models are
built from a config and saved locally with a locally built tokenizer)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch

from rlhf.algorithms import token_logprobs
from rlhf.algorithms.linear_logprobs import linear_token_logprobs
from rlhf.packing import packed_inputs, scatter_BR

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
    return model.to(device)


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


def position_ids_from_mask(attention_mask_BT: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as `generate` computes them."""
    return (attention_mask_BT.long().cumsum(-1) - 1).clamp(min=0)


def response_logprobs(model, input_ids_BT, attention_mask_BT, response_len: int, temperature: float = 1.0):
    """Log-probs [B, R] of the last `response_len` tokens under `model` at `temperature`."""
    out = model(input_ids=input_ids_BT, attention_mask=attention_mask_BT,
                position_ids=position_ids_from_mask(attention_mask_BT), use_cache=False)
    # logits at t predict token t+1: the R response tokens are predicted by positions [-R-1, -1)
    logits_BRV = out.logits[:, -response_len - 1:-1, :]
    return token_logprobs(logits_BRV, input_ids_BT[:, -response_len:], temperature=temperature)


# config keys of models whose logits are not hidden @ weight.T (capped or scaled); None or 1: they are
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "dim_model_base")


def fused_output_head(model):
    """(decoder, output-layer weight) when log-probs can be taken straight from the final hidden
    states (`linear_token_logprobs`: no [positions x vocabulary] logits), else None, which means the
    logits path. That is the only path for an output layer that is not a bias-free Linear (LoRA- or
    quantisation-wrapped), for a model that caps or scales its logits, and for a weight partitioned
    across ranks (ZeRO-3 gathers it only inside the layer's own forward). The fused path is chosen
    with `RLHF_LOGPROBS=fused`; the default, `logits`, is the faster one where both were timed
    (benchmarks/README.md, "Output layer and log-probs")."""
    choice = os.environ.get("RLHF_LOGPROBS", "logits")
    if choice not in ("fused", "logits"):
        raise ValueError(f"RLHF_LOGPROBS={choice!r}: expected 'fused' or 'logits'")
    inner = getattr(model, "module", model)  # a DeepSpeed engine's model
    head = inner.get_output_embeddings() if choice == "fused" else None
    if type(head) is not torch.nn.Linear or head.bias is not None or hasattr(head.weight, "ds_id"):
        return None
    if any(getattr(inner.config, key, None) not in (None, 1, 1.0) for key in _LOGIT_TRANSFORMS):
        return None
    return inner.get_decoder(), head.weight


def kept_token_logprobs(model, inputs: dict, keep_K: torch.Tensor, labels_BK: torch.Tensor,
                        temperature: float = 1.0) -> torch.Tensor:
    """Log-probs [B, K] of `labels_BK`, the tokens predicted at positions `keep_K` of each row of
    the forward `inputs`. The [B, K, vocabulary] logits, the largest tensor of a step, are formed
    only at those positions (`logits_to_keep`), or not at all (`fused_output_head`)."""
    fused = fused_output_head(model)
    if fused is None:
        logits_BKV = model(**inputs, logits_to_keep=keep_K).logits
        return token_logprobs(logits_BKV, labels_BK, temperature=temperature)
    decoder, weight_VH = fused
    hidden_BKH = decoder(**inputs).last_hidden_state[:, keep_K]
    B, K, H = hidden_BKH.shape
    lp = linear_token_logprobs(hidden_BKH.reshape(B * K, H), weight_VH, labels_BK.reshape(B * K),
                               temperature=temperature)
    return lp.view(B, K)


def packed_response_logprobs(model, mb: dict, device: str, temperature: float = 1.0) -> torch.Tensor:
    """Log-probs [b, R] of the response tokens of a packed RL micro-batch (`rlhf.packing`),
    scored only at the positions that predict them (`kept_token_logprobs`)."""
    keep = mb["response_positions_K"].to(device)
    lp_K = kept_token_logprobs(model, packed_inputs(mb, device), keep, mb["response_labels_K"].to(device)[None],
                               temperature)[0]
    return scatter_BR(lp_K, mb)


def packed_token_values(model, mb: dict, device: str) -> torch.Tensor:
    """The value head [b, R] of a packed RL micro-batch: for each response token, the head at
    the position before it (the state it is sampled from)."""
    hidden_1NH = model.base_model(**packed_inputs(mb, device)).last_hidden_state
    values_K = model.score(hidden_1NH[0, mb["response_positions_K"].to(device)]).squeeze(-1).float()
    return scatter_BR(values_K, mb)


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
    return model.to(device)


def token_values(model, inputs: dict) -> torch.Tensor:
    """The scalar head at every position [B, T] (`inputs` as from `model_inputs`)."""
    hidden = model.base_model(**inputs, use_cache=False).last_hidden_state
    return model.score(hidden).squeeze(-1).float()


def end_positions(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) of every example's last token, examples in order (padded or packed)."""
    if "segment_ids_BT" not in batch:
        last = batch["attention_mask_BT"].sum(1) - 1
        return torch.arange(len(last)), last
    seg = batch["segment_ids_BT"]
    nxt = torch.cat([seg[:, 1:], torch.zeros_like(seg[:, :1])], 1)
    return ((seg > 0) & (nxt != seg)).nonzero(as_tuple=True)  # row-major = example order


def loss_token_logprobs(model, batch: dict, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs, loss mask), both [B, T-1], of the tokens each position predicts (padded or
    packed batch). The logits, [tokens x vocabulary] and the largest tensor of a step, are computed
    only at positions that predict a loss token (`logits_to_keep`); the others get log-prob 0."""
    from rlhf.data.sequences import model_inputs

    inputs = model_inputs(batch, device, flash=uses_flash_attention(model))
    mask_BT = batch["loss_mask_BT"][:, 1:].to(device)
    keep_K = mask_BT.any(0).nonzero().flatten()
    if keep_K.numel() == 0:  # an empty micro-batch still runs the whole graph (every rank's collectives)
        logits = model(**inputs, use_cache=False).logits
        return token_logprobs(logits[:, :-1], inputs["input_ids"][:, 1:]), mask_BT
    lp_BK = kept_token_logprobs(model, inputs | {"use_cache": False}, keep_K, inputs["input_ids"][:, 1:][:, keep_K])
    lp_BT = lp_BK.new_zeros(mask_BT.shape).index_copy(1, keep_K, lp_BK)
    return lp_BT, mask_BT


def sequence_logps(model, batch: dict, device: str) -> torch.Tensor:
    """Summed log-probs of each example's response tokens [N] (padded or packed batch)."""
    lp_BT, mask_BT = loss_token_logprobs(model, batch, device)
    return per_example_sums(batch, torch.where(mask_BT > 0, lp_BT, 0.0))


def sequence_lengths(batch: dict) -> torch.Tensor:
    """Response tokens of each example [N], in the order of `sequence_logps`."""
    return per_example_sums(batch, batch["loss_mask_BT"][:, 1:].float())


def per_example_sums(batch: dict, values_BT: torch.Tensor) -> torch.Tensor:
    """Sum of `values_BT` (aligned with the batch's tokens 1..T-1) over each example [N]."""
    if "segment_ids_BT" not in batch:
        return values_BT.sum(1)
    device = values_BT.device
    seg = batch["segment_ids_BT"][:, 1:].to(device)
    counts = batch["segment_ids_BT"].max(1).values.to(device)
    offsets = torch.cumsum(counts, 0) - counts  # first example index of each row
    index = (offsets[:, None] + seg - 1).clamp(min=0)
    return torch.zeros(int(counts.sum()), device=device, dtype=values_BT.dtype).index_add_(
        0, index.flatten(), values_BT.flatten())
