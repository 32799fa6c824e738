"""The generator's engine on GPU: vLLM. Every vLLM-specific call of the project is in this file.

Tested with vLLM 0.26.0 (CUDA 13, torch 2.11). The engine core runs in the actor's own process
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so weights reach the live model by a call, without a
restart or a disk round trip: `LLM.collective_rpc` runs `_load_weights` in every worker, which
hands the tensors to the model's own `load_weights` (the same name mapping as a checkpoint
load, so Hugging Face names work, fused QKV/gate-up layers included).

Log-probs: `logprobs_mode="processed_logprobs"` makes vLLM return the log-probs of the
distribution it sampled from (after temperature), as the HF engine and the trainer compute them.
"""

from __future__ import annotations

import os

import torch

from rlhf.batch import Completion


# ---- functions run inside every vLLM worker (`LLM.collective_rpc`) -------------------------

def _model(worker):
    return worker.model_runner.model


def _load_weights(worker, named_tensors: list) -> int:
    """Load HF-named tensors into the live model, in place."""
    device = next(_model(worker).parameters()).device
    _model(worker).load_weights(weights=[(n, t.to(device, non_blocking=True)) for n, t in named_tensors])
    torch.cuda.synchronize()
    return len(named_tensors)


def _join_weight_group(worker, addr: str, port: int, first_rank: int, world_size: int, backend: str, plan: list):
    from rlhf.sync.collective import weight_group

    rank = first_rank + getattr(worker, "rank", 0)  # the worker's tensor-parallel rank
    worker.rlhf_weight_group = weight_group(addr, port, rank, world_size, backend)
    worker.rlhf_plan = plan


def _receive_weights(worker) -> None:
    from rlhf.sync.collective import receive_buckets

    model = _model(worker)
    device = next(model.parameters()).device
    for tensors in receive_buckets(worker.rlhf_weight_group, worker.rlhf_plan, device):
        model.load_weights(weights=list(tensors.items()))
    torch.cuda.synchronize()


def _device_uuid(worker) -> str:
    from rlhf.sync.collective import device_uuid

    return device_uuid()


def _load_ipc_bucket(worker, handles: dict, bucket: list) -> None:
    from rlhf.sync.buckets import unflatten
    from rlhf.sync.collective import device_uuid, open_ipc_handle

    flat = open_ipc_handle(handles[device_uuid()])
    _model(worker).load_weights(weights=list(unflatten(bucket, flat).items()))
    torch.cuda.synchronize()


class VLLMEngine:
    def __init__(self, model_path: str, dtype: str = "auto", seed: int = 0, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.4, max_model_len: int | None = None, sleep_mode: bool = False,
                 enforce_eager: bool = False):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        self.llm = LLM(model=model_path, dtype="bfloat16" if dtype == "auto" else dtype, seed=seed,
                       tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
                       max_model_len=max_model_len, enable_prefix_caching=True, enable_sleep_mode=sleep_mode,
                       enforce_eager=enforce_eager, logprobs_mode="processed_logprobs")
        tok = self.llm.get_tokenizer()
        self.eos_id = tok.eos_token_id
        self.tensor_parallel_size = tensor_parallel_size

    def generate(self, prompt_ids: list[list[int]], s) -> list[Completion]:
        from vllm import SamplingParams, TokensPrompt

        greedy = s.temperature == 0
        params = SamplingParams(n=s.n, temperature=0.0 if greedy else s.temperature, top_p=1.0 if greedy else s.top_p,
                                max_tokens=s.max_new_tokens, seed=s.seed, logprobs=0, stop_token_ids=[self.eos_id],
                                ignore_eos=s.ignore_eos, detokenize=False)  # the driver decodes
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompt_ids], params, use_tqdm=False)
        completions = []
        for out in outs:
            for c in out.outputs:
                ids = list(c.token_ids)
                lps = [step[t].logprob for t, step in zip(ids, c.logprobs)]
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

    def load_ipc_bucket(self, handles: dict, bucket: list) -> None:
        self.llm.collective_rpc(_load_ipc_bucket, args=(handles, bucket))
        self.llm.reset_prefix_cache()

    @torch.no_grad()
    def logprobs(self, batch: dict, temperature: float) -> torch.Tensor:
        """Log-probs [B, R] of the batch's response tokens, scored by the engine (prompt log-probs)."""
        from vllm import SamplingParams, TokensPrompt

        R = batch["response_mask_BR"].shape[1]
        prompts = [row[mask.bool()].tolist() for row, mask in zip(batch["input_ids_BT"], batch["attention_mask_BT"])]
        params = SamplingParams(max_tokens=1, temperature=temperature, prompt_logprobs=0)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        out = torch.zeros(len(prompts), R)
        for i, (o, ids) in enumerate(zip(outs, prompts)):
            n = int(batch["response_mask_BR"][i].sum())
            scored = o.prompt_logprobs  # [None, {tok: Logprob}, ...], one entry per prompt token
            out[i, :n] = torch.tensor([scored[len(ids) - n + j][ids[len(ids) - n + j]].logprob for j in range(n)])
        return out

    def sleep(self) -> None:
        self.llm.sleep(level=1)  # weights to host memory, KV cache freed

    def wake_up(self) -> None:
        self.llm.wake_up()
