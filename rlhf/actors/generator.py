"""Rollout generator role. The driver only sees `Generator`; the engine behind it is
transformers `generate` (CPU, tests) or vLLM (`rlhf.actors.vllm_engine`, GPU). An engine
implements generate / load_weights / logprobs, plus optional sleep / wake_up."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf.actors.runtime import setup_process
from rlhf.batch import Completion
from rlhf.models import load_causal_lm, resolve_dtype, response_logprobs


@dataclass
class SamplingSettings:
    n: int = 1
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 16
    seed: int = 0
    ignore_eos: bool = False  # fixed-length responses (benchmarks)


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
            pad_token_id=self.pad_id, output_scores=True, return_dict_in_generate=True,
        )
        # normalize_logits: log-softmax of the processed (temperature/top-p) logits = the sampling distribution
        logprobs = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        return [self._completion(row, lp) for row, lp in zip(out.sequences[:, P:].tolist(), logprobs.tolist())]

    def _completion(self, row: list[int], lp: list[float]) -> Completion:
        n = row.index(self.eos_id) + 1 if self.eos_id in row else len(row)
        return Completion(row[:n], lp[:n], finished=n > 0 and row[n - 1] == self.eos_id)

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

    # The bucketed transports (`rlhf.sync`): this engine is one worker of the broadcast group.
    def num_workers(self) -> int:
        return 1

    def join_weight_group(self, addr: str, port: int, rank: int, world_size: int, backend: str, plan: list) -> None:
        from rlhf.sync.collective import weight_group

        self.weight_group, self.plan = weight_group(addr, port, rank, world_size, backend), plan

    def receive_weights(self) -> None:
        from rlhf.sync.collective import receive_buckets

        for tensors in receive_buckets(self.weight_group, self.plan, self.device):
            self.load_weights(tensors, partial=True)

    def device_uuids(self) -> list[str]:
        from rlhf.sync.collective import device_uuid

        return [device_uuid()] if self.device == "cuda" else []

    def load_ipc_bucket(self, handles: dict, bucket: list) -> None:
        from rlhf.sync.buckets import unflatten
        from rlhf.sync.collective import device_uuid, open_ipc_handle

        self.load_weights(unflatten(bucket, open_ipc_handle(handles[device_uuid()])), partial=True)

    @torch.no_grad()
    def logprobs(self, batch: dict, temperature: float) -> torch.Tensor:
        R = batch["response_mask_BR"].shape[1]
        return response_logprobs(self.model, batch["input_ids_BT"].to(self.device),
                                 batch["attention_mask_BT"].to(self.device), R, temperature).cpu()


class Generator:
    """Rollout role: `generate`, `load_weights`, `logprobs`, and `sleep`/`wake_up` for colocation."""

    def __init__(self, model_path: str, backend: str = "hf", dtype: str = "auto", seed: int = 0,
                 threads: int = 0, rank: int = 0, vllm: dict | None = None):
        device = setup_process(seed + 1000 * rank, threads)
        self.rank = rank
        self.weights_version = 0
        if backend == "vllm":
            from rlhf.actors.vllm_engine import VLLMEngine

            self.engine = VLLMEngine(model_path, dtype, seed + 1000 * rank, **(vllm or {}))
        elif backend == "hf":
            self.engine = HFEngine(model_path, dtype, device)
        else:
            raise ValueError(f"generator.backend={backend!r}: use 'hf' or 'vllm'")

    def generate(self, prompt_ids: list[list[int]], settings: SamplingSettings) -> list[Completion]:
        """`settings.n` completions per prompt, grouped by prompt (prompt-major order), each
        tagged with the version of the weights that sampled it."""
        completions = self.engine.generate(prompt_ids, settings)
        for c in completions:
            c.version = self.weights_version
        return completions

    def load_weights(self, named_tensors: dict, version: int) -> int:
        self.engine.load_weights(named_tensors)
        self.weights_version = version
        return version

    def logprobs(self, batch: dict, temperature: float = 1.0) -> torch.Tensor:
        return self.engine.logprobs(batch, temperature)

    # ---- bucketed weight transports (rlhf.sync) -------------------------------------------

    def num_workers(self) -> int:
        """Processes of the engine that hold weights (vLLM: one per tensor-parallel rank)."""
        return self.engine.num_workers()

    def join_weight_group(self, addr: str, port: int, first_rank: int, world_size: int, backend: str,
                          plan: list) -> None:
        """The engine's workers join the broadcast group as ranks first_rank, first_rank + 1, ..."""
        self.engine.join_weight_group(addr, port, first_rank, world_size, backend, plan)

    def receive_weights(self, version: int) -> int:
        self.engine.receive_weights()
        self.weights_version = version
        return version

    def device_uuids(self) -> list[str]:
        """The GPUs the engine's workers run on (empty on CPU)."""
        return self.engine.device_uuids()

    def load_ipc_bucket(self, handles: dict, bucket: list, version: int | None) -> None:
        """Loads one bucket shared through CUDA IPC (`handles`: GPU uuid -> handle); the last
        bucket of a sync carries its `version`."""
        self.engine.load_ipc_bucket(handles, bucket)
        if version is not None:
            self.weights_version = version

    def sleep(self) -> None:  # the HF engine holds nothing worth releasing
        getattr(self.engine, "sleep", lambda: None)()

    def wake_up(self) -> None:
        getattr(self.engine, "wake_up", lambda: None)()
