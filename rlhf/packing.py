"""Token-budget micro-batches: the one layout every trainer and scorer runs its forwards on.

A micro-batch is its sequences packed end to end in ONE row, no padding, positions restarting
at 0 in every sequence. Transformers reads the restarts as sequence boundaries (FlashAttention-2's
variable-length kernel, a document mask for FlexAttention/SDPA), so attention never crosses
sequences and a packed forward gives each sequence what it would get alone.

    input_ids_1N     long [1, N]  the sequences' real tokens, one after the other
    position_ids_1N  long [1, N]  0, 1, ... within each sequence

Planning (`plan_micro_batches`): rows are dealt to data-parallel ranks by token count (each rank
does the same work), each rank's rows go into micro-batches of at most `max_tokens` tokens
(a sequence is never split; a longer one gets a micro-batch of its own), and every rank runs
the same number of micro-batches, so collectives (ZeRO-3's gathers, the gradient reduction) can
never wait on a rank that has finished. A rank short of micro-batches splits its fullest ones;
one short of rows gets empty micro-batches, which run a one-token forward that adds nothing.
The loss normalisers stay the mini-batch's global counts, so how the rows fall changes nothing.

RL rows (`pack_rl_rows`) keep their per-token tensors on the [b, R] grid of the batch schema
(`rlhf.batch`), R trimmed to the micro-batch's longest response; `response_positions_K` says
which positions of the packed row predict the K real response tokens, so only those positions'
logits are ever computed (`logits_to_keep`), and `scatter_BR` puts per-token results back.
"""

from __future__ import annotations

import heapq

import torch

EMPTY: list[int] = []  # an empty micro-batch: a rank with fewer rows than micro-batches to run


def plan_micro_batches(lengths: list[int], world: int, max_tokens: int) -> list[list[list[int]]]:
    """Row indices per rank per micro-batch; every rank gets the same number of micro-batches."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    ranks = balance_ranks(lengths, world)
    plans = [pack_bins(rows, lengths, max_tokens) for rows in ranks]
    count = max(len(p) for p in plans)
    return [_split_to(p, lengths, count) for p in plans]


def balance_ranks(lengths: list[int], world: int) -> list[list[int]]:
    """Rows dealt longest first to the rank with the fewest tokens so far (then fewest rows);
    each rank's rows in batch order."""
    heap = [(0, 0, r) for r in range(world)]
    ranks: list[list[int]] = [[] for _ in range(world)]
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        tokens, rows, r = heapq.heappop(heap)
        ranks[r].append(i)
        heapq.heappush(heap, (tokens + lengths[i], rows + 1, r))
    return [sorted(rows) for rows in ranks]


def pack_bins(rows: list[int], lengths: list[int], max_tokens: int) -> list[list[int]]:
    """First-fit decreasing into micro-batches of at most `max_tokens` tokens (a longer row
    alone); rows of each micro-batch in batch order."""
    bins: list[list[int]] = []
    used: list[int] = []
    for i in sorted(rows, key=lambda i: (-lengths[i], i)):
        for b, u in enumerate(used):
            if u + lengths[i] <= max_tokens:
                bins[b].append(i)
                used[b] += lengths[i]
                break
        else:
            bins.append([i])
            used.append(lengths[i])
    return sorted(sorted(b) for b in bins)


def _split_to(bins: list[list[int]], lengths: list[int], count: int) -> list[list[int]]:
    """`bins` made `count` long: the fullest splittable micro-batch halved by tokens, then empty ones."""
    bins = [list(b) for b in bins]
    while len(bins) < count:
        splittable = [b for b in bins if len(b) > 1]
        if not splittable:
            bins += [list(EMPTY) for _ in range(count - len(bins))]
            break
        fullest = max(splittable, key=lambda b: sum(lengths[i] for i in b))
        bins.remove(fullest)
        half, acc = 1, lengths[fullest[0]]
        total = sum(lengths[i] for i in fullest)
        while half < len(fullest) - 1 and acc + lengths[fullest[half]] <= total / 2:
            acc += lengths[fullest[half]]
            half += 1
        bins += [fullest[:half], fullest[half:]]
    return bins


def pack_sequences(seqs: list[list[int]], pad_id: int) -> dict:
    """One packed row of `seqs` (an empty list: a single pad token, for an empty micro-batch)."""
    if not seqs:
        seqs = [[pad_id]]
    ids = torch.tensor([t for s in seqs for t in s], dtype=torch.long)[None]
    pos = torch.cat([torch.arange(len(s)) for s in seqs])[None]
    return {"input_ids_1N": ids, "position_ids_1N": pos}


def packed_inputs(mb: dict, device: str) -> dict:
    """Keyword arguments of a causal LM's forward on a packed micro-batch."""
    return {"input_ids": mb["input_ids_1N"].to(device), "position_ids": mb["position_ids_1N"].to(device),
            "use_cache": False}


# ---- RL rows --------------------------------------------------------------------------------

def rl_row_lengths(batch: dict) -> list[int]:
    """Real tokens (prompt + response) of every row of an RL batch."""
    return batch["attention_mask_BT"].sum(1).tolist()


def pack_rl_rows(batch: dict, rows: list[int], pad_id: int) -> dict:
    """The packed micro-batch of RL batch rows `rows`: the packed row, the positions whose
    logits predict the response tokens, and every [b, R] tensor of those rows (R trimmed).
    An empty `rows` gives a one-token micro-batch with one masked-out response position."""
    R_all = batch["response_mask_BR"].shape[1]
    P = batch["input_ids_BT"].shape[1] - R_all
    attn = batch["attention_mask_BT"]
    if not rows:
        mb = pack_sequences([], pad_id)
        per_token = {k: torch.zeros((1, 1), dtype=v.dtype) for k, v in batch.items() if k.endswith("_BR")}
        return mb | per_token | {"response_positions_K": torch.zeros(1, dtype=torch.long),
                                 "response_labels_K": torch.full((1,), pad_id, dtype=torch.long),
                                 "response_slots_K": torch.zeros(1, dtype=torch.long)}
    idx = torch.tensor(rows, dtype=torch.long)
    resp_len = attn[idx, P:].sum(1)
    R = max(1, int(resp_len.max()))
    seqs, positions, slots, start = [], [], [], 0
    for j, i in enumerate(rows):
        real = batch["input_ids_BT"][i][attn[i] > 0]
        n, r = len(real), int(resp_len[j])
        seqs.append(real.tolist())
        # logits at position t predict token t+1: response token k is predicted at n - r - 1 + k
        positions.append(torch.arange(start + n - r - 1, start + n - 1))
        slots.append(j * R + torch.arange(r))
        start += n
    mb = pack_sequences(seqs, pad_id)
    positions = torch.cat(positions)
    per_token = {k: v[idx, :R] for k, v in batch.items() if k.endswith("_BR")}
    return mb | per_token | {"response_positions_K": positions,
                             "response_labels_K": mb["input_ids_1N"][0, positions + 1],
                             "response_slots_K": torch.cat(slots)}


def scatter_BR(values_K: torch.Tensor, mb: dict) -> torch.Tensor:
    """Per-response-token values [K] onto the micro-batch's [b, R] grid (0 off the responses)."""
    b, R = mb["response_mask_BR"].shape
    out = values_K.new_zeros(b * R)
    return out.index_put((mb["response_slots_K"].to(values_K.device),), values_K).view(b, R)


def rl_micro_batches(batch: dict, world: int, max_tokens: int, pad_id: int) -> tuple[list[list[dict]], list]:
    """Per rank, the packed micro-batches of an RL batch, and the plan (row indices) that
    `gather_rows` needs to put per-row results back in batch order."""
    plan = plan_micro_batches(rl_row_lengths(batch), world, max_tokens)
    return [[pack_rl_rows(batch, rows, pad_id) for rows in rank] for rank in plan], plan


def gather_rows(results: list[list[torch.Tensor]], plan: list, num_rows: int, R: int) -> torch.Tensor:
    """[B, R] from per-rank, per-micro-batch [b, R_mb] results laid out as `plan`."""
    out = torch.zeros((num_rows, R))
    for rank_results, rank_plan in zip(results, plan):
        for values, rows in zip(rank_results, rank_plan):
            if rows:
                out[torch.tensor(rows), :values.shape[1]] = values.to(out.dtype)
    return out
