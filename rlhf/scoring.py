"""Scoring a loaded model on a batch, padded or packed (`rlhf.data.sequences`, `rlhf.packing`):
per-token log-probs of the tokens that count (responses, loss tokens), forming the output
layer's logits only where they are needed or not at all, value heads, and per-example sums."""

from __future__ import annotations

import os

import torch

from rlhf.algorithms import token_logprobs
from rlhf.algorithms.linear_logprobs import linear_token_logprobs
from rlhf.models import uses_flash_attention
from rlhf.packing import packed_inputs, scatter_BR


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


LOGPROB_PATHS = ("logits", "blocks", "fused")


def logprobs_path() -> str:
    """`RLHF_LOGPROBS`: `logits` (default): the output layer's logits at the positions scored,
    their log-softmax by the Triton kernels on GPU (`rlhf.algorithms.logprobs_kernel`) and block
    by block elsewhere; `blocks`: the same logits, block by block on GPU too; `fused`: no logits
    at all (`fused_output_head`). The default is the fastest where all were timed (BENCHMARKS.md)."""
    choice = os.environ.get("RLHF_LOGPROBS", "logits")
    if choice not in LOGPROB_PATHS:
        raise ValueError(f"RLHF_LOGPROBS={choice!r}: expected one of {', '.join(LOGPROB_PATHS)}")
    return choice


def fused_output_head(model):
    """(decoder, output-layer weight) when log-probs can be taken straight from the final hidden
    states (`linear_token_logprobs`: no [positions x vocabulary] logits), else None, which means the
    logits path. That is the only path for an output layer that is not a bias-free Linear (LoRA- or
    quantisation-wrapped), for a model that caps or scales its logits, and for a weight partitioned
    across ranks (ZeRO-3 gathers it only inside the layer's own forward). The fused path is chosen
    with `RLHF_LOGPROBS=fused` (`logprobs_path`)."""
    choice = logprobs_path()
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
        kernel = False if logprobs_path() == "blocks" else None
        # the logits exist for this call alone: their gradient may take their memory
        return token_logprobs(logits_BKV, labels_BK, temperature=temperature, kernel=kernel, overwrite=True)
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
    mask_BT = batch["loss_mask_BT"][:, 1:]
    keep_K = mask_BT.any(0).nonzero().flatten().to(device)  # found on the host: no wait for the GPU
    mask_BT = mask_BT.to(device)
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
