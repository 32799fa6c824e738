"""Tokenized training sequences for SFT, reward modelling and DPO, and their batches.

An example is (token ids, number of prompt tokens): the chat template renders the prompt
with the generation prompt, the response follows with the end-of-turn token, and only the
response tokens carry loss. A multi-turn response (`encode_turns`: the model's turns with
tool results between them) gives a per-token loss mask instead of the prompt length: 1 on
the model's turns, 0 on the prompt and the observations, as in an RL episode. Batches are
padded (one example per row) or packed (examples end to end, each with its own positions, so
attention never crosses examples; a trainer's packed micro-batch is one row, see `rlhf.packing`).

    input_ids_BT       long   token ids (pad where unused)
    attention_mask_BT  long   1 on real tokens
    loss_mask_BT       float  1 on response tokens (the targets of the loss)
    position_ids_BT    long   packed only: positions restarting at 0 in every example
    segment_ids_BT     long   packed only: 1, 2, ... per example in the row, 0 on padding
"""

from __future__ import annotations

import functools

import torch

from rlhf.data.formats import Messages

Example = tuple[list[int], "int | list[int]"]  # (ids, prompt length or per-token loss mask)


def loss_mask_of(example: Example) -> torch.Tensor:
    ids, spec = example
    if isinstance(spec, int):
        return torch.cat([torch.zeros(spec), torch.ones(len(ids) - spec)])
    return torch.tensor(spec, dtype=torch.float32)


def _prompt_ids(prompt: Messages, tokenizer) -> list[int]:
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@functools.lru_cache(maxsize=8)
def _renderer(tokenizer):
    from rlhf.envs.episode import ObservationRenderer  # the episode's own rendering of observations

    return ObservationRenderer(tokenizer, tokenizer.eos_token_id)


def encode(prompt: Messages, response: str, tokenizer) -> Example:
    p_ids = _prompt_ids(prompt, tokenizer)
    r_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return p_ids + r_ids, len(p_ids)


def encode_turns(prompt: Messages, turns: Messages, tokenizer) -> Example:
    """A multi-turn continuation of `prompt` (assistant turns, and the tool or user messages
    between them), laid out as an episode assembles it (`rlhf.envs.episode`): each assistant
    turn's text and the end-of-turn token, each run of other messages rendered by the chat
    template for that turn alone. Loss on the assistant turns only."""
    if not turns or turns[0].get("role") != "assistant" or turns[-1].get("role") != "assistant":
        raise ValueError("a multi-turn response must start and end with an assistant message")
    ids = _prompt_ids(prompt, tokenizer)
    mask = [0] * len(ids)
    renderer = _renderer(tokenizer)  # one per tokenizer: building it renders the template
    pending: Messages = []
    for m in turns:
        if m.get("role") != "assistant":
            pending.append(m)
            continue
        if pending:
            obs = renderer.ids(pending)
            ids, mask, pending = ids + obs, mask + [0] * len(obs), []
        turn = tokenizer(str(m["content"]), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids, mask = ids + turn, mask + [1] * len(turn)
    return ids, mask


def pad_batch(examples: list[Example], pad_id: int) -> dict:
    """One example per row, right-padded."""
    T = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    loss_mask = torch.zeros((len(examples), T))
    for i, ex in enumerate(examples):
        seq = ex[0]
        ids[i, :len(seq)] = torch.tensor(seq)
        attn[i, :len(seq)] = 1
        loss_mask[i, :len(seq)] = loss_mask_of(ex)
    return {"input_ids_BT": ids, "attention_mask_BT": attn, "loss_mask_BT": loss_mask}


def pack_batch(examples: list[Example], max_len: int | None, pad_id: int) -> dict:
    """Examples placed in order into rows of at most `max_len` tokens (a new row when the
    next one does not fit; None: all in one row); an example longer than `max_len` is an error."""
    rows: list[list[Example]] = [[]]
    used = 0
    max_len = max_len or sum(len(ids) for ids, _ in examples)
    for ex in examples:
        if len(ex[0]) > max_len:
            raise ValueError(f"an example has {len(ex[0])} tokens > max_len={max_len}")
        if used + len(ex[0]) > max_len:
            rows.append([])
            used = 0
        rows[-1].append(ex)
        used += len(ex[0])
    T = max(sum(len(ids) for ids, _ in row) for row in rows)
    out = {k: torch.zeros((len(rows), T), dtype=torch.long) for k in
           ("input_ids_BT", "attention_mask_BT", "position_ids_BT", "segment_ids_BT")}
    out["input_ids_BT"].fill_(pad_id)
    out["loss_mask_BT"] = torch.zeros((len(rows), T))
    for r, row in enumerate(rows):
        t = 0
        for seg, ex in enumerate(row, 1):
            seq, n = ex[0], len(ex[0])
            out["input_ids_BT"][r, t:t + n] = torch.tensor(seq)
            out["attention_mask_BT"][r, t:t + n] = 1
            out["position_ids_BT"][r, t:t + n] = torch.arange(n)
            out["segment_ids_BT"][r, t:t + n] = seg
            out["loss_mask_BT"][r, t:t + n] = loss_mask_of(ex)
            t += n
    return out


def model_inputs(batch: dict, device: str, flash: bool = False) -> dict:
    """Keyword arguments of the model's forward for a padded or packed batch. A packed row gets
    only position ids that restart at each example: transformers splits the row there
    (FlashAttention-2's variable-length kernel, a document mask for FlexAttention and SDPA).
    Several packed rows (padded at their ends) get a block-diagonal causal mask instead."""
    ids = batch["input_ids_BT"].to(device)
    if "segment_ids_BT" not in batch:
        return {"input_ids": ids, "attention_mask": batch["attention_mask_BT"].to(device)}
    positions = batch["position_ids_BT"].to(device)
    if ids.shape[0] == 1:
        return {"input_ids": ids, "position_ids": positions}
    if flash:
        raise ValueError("FlashAttention-2 takes packed examples in one row (rlhf.packing), not several")
    seg = batch["segment_ids_BT"].to(device)
    T = seg.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()
    same = seg[:, :, None] == seg[:, None, :]
    # padding (segment 0) attends to itself only, so no softmax row is empty
    mask = causal & same & ((seg[:, None, :] > 0) | torch.eye(T, dtype=torch.bool, device=device))
    return {"input_ids": ids, "attention_mask": mask[:, None], "position_ids": positions}
