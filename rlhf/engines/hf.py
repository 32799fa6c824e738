"""The generator's engine on CPU (and in tests): transformers `generate`."""

from __future__ import annotations

import time

import torch

from rlhf.batch import Completion
from rlhf.engines.interface import SamplingSettings
from rlhf.models import load_causal_lm, resolve_dtype
from rlhf.scoring import response_logprobs
from rlhf.sync import broadcast, ipc
from rlhf.sync.collective import device_uuid


class HFEngine:
    """transformers `generate` with per-token log-probs of the sampling distribution."""

    def __init__(self, model_path: str, dtype: str, device: str):
        self.model = load_causal_lm(model_path, resolve_dtype(dtype), device).eval()
        self.device = device
        gen_cfg = self.model.generation_config
        self.eos_id = gen_cfg.eos_token_id if isinstance(gen_cfg.eos_token_id, int) else gen_cfg.eos_token_id[0]
        self.pad_id = self.model.config.pad_token_id if self.model.config.pad_token_id is not None else self.eos_id

    @torch.no_grad()
    def generate(self, prompt_ids: list[list[int]], s: SamplingSettings) -> list[Completion]:
        P = max(map(len, prompt_ids))
        ids = torch.full((len(prompt_ids), P), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompt_ids):
            ids[i, P - len(p):] = torch.tensor(p)
            mask[i, P - len(p):] = 1
        greedy = s.temperature == 0
        torch.manual_seed(s.seed)
        out = self.model.generate(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device), do_sample=not greedy,
            temperature=None if greedy else s.temperature, top_p=None if greedy else s.top_p, top_k=None,
            max_new_tokens=s.max_new_tokens, min_new_tokens=s.max_new_tokens if s.ignore_eos else None,
            num_return_sequences=s.n, eos_token_id=self.eos_id,
            pad_token_id=self.pad_id, output_scores=s.logprobs, return_dict_in_generate=True,
        )
        rows = out.sequences[:, P:].tolist()
        if not s.logprobs:
            return [self._completion(row, None) for row in rows]
        # normalize_logits: log-softmax of the processed (temperature/top-p) logits = the sampling distribution
        logprobs = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        return [self._completion(row, lp) for row, lp in zip(rows, logprobs.tolist())]

    def _completion(self, row: list[int], lp: list[float] | None) -> Completion:
        n = row.index(self.eos_id) + 1 if self.eos_id in row else len(row)
        return Completion(row[:n], lp[:n] if lp is not None else None, finished=n > 0 and row[n - 1] == self.eos_id)

    @torch.no_grad()
    def load_weights(self, named_tensors: dict, partial: bool = False) -> None:
        """Copy by parameter name, in place (the same contract as vLLM's `load_weights`); a
        `partial` load (one bucket) may leave other parameters out."""
        params = dict(self.model.named_parameters())  # tied weights appear once
        unknown = sorted(set(named_tensors) - set(params))
        missing = [] if partial else sorted(set(params) - set(named_tensors))
        if unknown or missing:
            raise KeyError(f"weight names do not match the model: unknown {unknown[:5]}, missing {missing[:5]}")
        for name, tensor in named_tensors.items():
            params[name].copy_(tensor)

    @torch.no_grad()
    def logprobs(self, batch: dict, temperature: float) -> torch.Tensor:
        R = batch["response_mask_BR"].shape[1]
        return response_logprobs(self.model, batch["input_ids_BT"].to(self.device),
                                 batch["attention_mask_BT"].to(self.device), R, temperature).cpu()

    def sleep(self) -> None:  # holds nothing worth releasing
        pass

    def wake_up(self) -> None:
        pass

    # The bucketed transports (`rlhf.sync`): this engine is one worker of the broadcast group.
    def num_workers(self) -> int:
        return 1

    def device_uuids(self) -> list[str]:
        return [device_uuid()] if self.device == "cuda" else []

    def join_weight_group(self, addr: str, port: int, rank: int, world_size: int, backend: str, plan: list) -> None:
        self.receiver = broadcast.join_as_receiver(addr, port, rank, world_size, backend, plan)

    def receive_weights(self) -> None:
        self.receiver.receive(self.device, lambda tensors: self.load_weights(tensors, partial=True))

    def load_ipc_bucket(self, key: str, source, reset_cache: bool = True) -> dict:
        views = ipc.open_source(key, source)
        if views is None:
            return {"unopened": 1.0}
        t0 = time.perf_counter()
        self.load_weights(views, partial=True)  # no cache to reset
        return {"model_load_s": time.perf_counter() - t0}
