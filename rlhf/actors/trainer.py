"""Policy trainer role: DeepSpeed ZeRO everywhere (gloo on CPU, NCCL on GPU).

Each actor is one data-parallel rank. The driver hands every rank its shard of each
mini-batch together with the mini-batch's GLOBAL token/sequence counts, so the summed
gradient over micro-batches and ranks is exactly the gradient of the loss aggregated over
the whole mini-batch (DeepSpeed averages over ranks, hence the `* world_size`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch

from rlhf.actors.runtime import free_port, node_ip, setup_process
from rlhf.algorithms import (aggregate_loss, dpo_loss, get_policy_loss, kl_estimate, token_logprobs,
                             truncated_is_weights)
from rlhf.data.sequences import model_inputs
from rlhf.metrics import combine_shards, mean_dicts
from rlhf.models import (apply_lora, load_causal_lm, load_tokenizer, resolve_dtype, response_logprobs, sequence_logps,
                         uses_flash_attention)


@dataclass
class OptimSettings:
    lr: float
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    zero_stage: int = 0
    offload: bool = False
    micro_batch_size: int = 32
    grad_accum: int = 1  # micro-batches per optimizer step on one rank
    gradient_checkpointing: bool = False
    warmup_steps: int = 0  # linear warmup from 0 to lr
    decay_steps: int = 0  # > 0: then decay linearly to 0 at this step; 0: constant after warmup


@dataclass
class PolicyLossSettings:
    name: str = "ppo"
    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip: Optional[float] = None
    agg_mode: str = "token-mean"
    norm_len: int = 16  # constant length of Dr.GRPO's seq-mean-token-sum-norm
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    temperature: float = 1.0
    rollout_is: Optional[dict] = None  # truncated IS vs the rollout engine: {cap, level, mode}; None: off


class PolicyTrainer:
    def __init__(self, model_path: str, optim: OptimSettings, rank: int, world_size: int,
                 dtype: str = "auto", seed: int = 0, threads: int = 0, lora: Optional[dict] = None):
        self.device = setup_process(seed, threads)
        self.model_path, self.optim, self.rank, self.world_size = model_path, optim, rank, world_size
        self.lora = lora  # `rlhf.models.apply_lora` arguments, or None
        self.dtype = resolve_dtype(dtype)
        self.engine = None
        self.version = 0  # optimizer steps taken: the policy version

    def rendezvous(self) -> tuple[str, int]:
        """Rank 0's address for the process group (any node: Ray's registered address)."""
        return node_ip(), free_port()

    def init_distributed(self, master_addr: str, master_port: int) -> None:
        """Called on every rank at once: joins the group and builds the DeepSpeed engine."""
        import deepspeed

        os.environ.update(RANK=str(self.rank), WORLD_SIZE=str(self.world_size), LOCAL_RANK="0",
                          MASTER_ADDR=master_addr, MASTER_PORT=str(master_port))
        deepspeed.init_distributed(dist_backend="nccl" if self.device == "cuda" else "gloo")
        model = self._load_model()
        if self.optim.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        o = self.optim
        trained = [p for p in model.parameters() if p.requires_grad]  # LoRA: the adapters only
        optimizer = torch.optim.AdamW(trained, lr=o.lr, weight_decay=o.weight_decay)
        zero: dict = {"stage": o.zero_stage}
        if o.offload:
            zero["offload_optimizer"] = {"device": "cpu"}
        config = {
            "train_micro_batch_size_per_gpu": o.micro_batch_size,
            "gradient_accumulation_steps": o.grad_accum,
            "train_batch_size": o.micro_batch_size * o.grad_accum * self.world_size,
            "gradient_clipping": o.grad_clip,
            "zero_optimization": zero,
            "bf16": {"enabled": self.dtype == torch.bfloat16},
            "zero_allow_untested_optimizer": True,
            "steps_per_print": 2**31 - 1,
        }
        if o.decay_steps:
            config["scheduler"] = {"type": "WarmupDecayLR", "params": {
                "warmup_min_lr": 0.0, "warmup_max_lr": o.lr, "warmup_num_steps": o.warmup_steps,
                "warmup_type": "linear", "total_num_steps": o.decay_steps}}
        elif o.warmup_steps:
            config["scheduler"] = {"type": "WarmupLR", "params": {
                "warmup_min_lr": 0.0, "warmup_max_lr": o.lr, "warmup_num_steps": o.warmup_steps,
                "warmup_type": "linear"}}
        self.engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)

    def _load_model(self):
        """The trained module (subclasses train other heads on the same engine setup)."""
        model = load_causal_lm(self.model_path, self.dtype, self.device)
        return apply_lora(model, **self.lora) if self.lora else model

    # ---- RL ----------------------------------------------------------------------------

    @torch.no_grad()
    def logprobs(self, batch: dict, temperature: float = 1.0) -> torch.Tensor:
        """Log-probs of this rank's shard under the current policy (pi_old before an update)."""
        self.engine.eval()
        R = batch["response_mask_BR"].shape[1]
        out = [response_logprobs(self.engine, mb["input_ids_BT"].to(self.device),
                                 mb["attention_mask_BT"].to(self.device), R, temperature).cpu()
               for mb in self._micro(batch)]
        return torch.cat(out)

    def train_rl(self, minibatches: list[dict], counts: list[dict], loss: PolicyLossSettings) -> dict:
        """One optimizer step per mini-batch. `counts[i]` holds mini-batch i's global
        `num_tokens` / `num_seqs`, making the per-shard losses add up to the full loss."""
        policy_loss = get_policy_loss(loss.name)
        self.engine.train()
        steps = []
        for shard, count in zip(minibatches, counts):
            micro_metrics = []
            for mb in self._micro(shard):
                norms = dict(num_tokens=count["num_tokens"], num_seqs=count["num_seqs"], norm_len=loss.norm_len)
                mask = mb["response_mask_BR"].to(self.device)
                R = mask.shape[1]
                lp = response_logprobs(self.engine, mb["input_ids_BT"].to(self.device),
                                       mb["attention_mask_BT"].to(self.device), R, loss.temperature)
                old = mb["old_logprobs_BR"].to(self.device) if "old_logprobs_BR" in mb else lp.detach()
                extra, is_metrics = {}, {}
                if loss.rollout_is is not None:  # pi_old / pi_rollout, truncated
                    extra["is_weights_BR"], is_metrics = truncated_is_weights(
                        old, mb["rollout_logprobs_BR"].to(self.device), mask, **loss.rollout_is)
                value, metrics = policy_loss(lp, old, mb["advantages_BR"].to(self.device), mask,
                                             eps_low=loss.eps_low, eps_high=loss.eps_high,
                                             dual_clip=loss.dual_clip, agg_mode=loss.agg_mode, **extra, **norms)
                metrics = {f"actor/{k}": v for k, v in metrics.items()}
                metrics |= {f"offpolicy/{k}": v for k, v in is_metrics.items()}
                metrics["actor/pg_loss"] = value.item()
                if loss.kl_coef > 0:
                    kl = aggregate_loss(kl_estimate(lp, mb["ref_logprobs_BR"].to(self.device), loss.kl_estimator),
                                        mask, loss.agg_mode, **norms)
                    value = value + loss.kl_coef * kl
                    metrics["actor/kl_loss"] = kl.item()
                self.engine.backward(value * self.world_size, scale_wrt_gas=False)
                grad_norm = self._step()
                micro_metrics.append(metrics)
            steps.append(combine_shards(micro_metrics) | {"actor/grad_norm": grad_norm,
                                                          "actor/lr": self.engine.get_lr()[0]})
        self.version += len(minibatches)
        return mean_dicts(steps)

    # ---- supervised (warm start, SFT) and DPO -------------------------------------------

    def train_sft(self, batch: dict, num_tokens: int) -> dict:
        """One optimizer step of token-mean cross-entropy on `loss_mask_BT` tokens (padded or
        packed rows, see `rlhf.data.sequences`); `num_tokens` is the global count of loss
        tokens in the step's batch."""
        self.engine.train()
        total = 0.0
        for mb in self._micro(batch):
            nll, _ = self._nll(mb)
            loss = nll / num_tokens
            self.engine.backward(loss * self.world_size, scale_wrt_gas=False)
            grad_norm = self._step()
            total += loss.item()
        self.version += 1
        return {"sft/loss": total, "sft/grad_norm": grad_norm}

    @torch.no_grad()
    def sft_eval(self, batch: dict) -> tuple[float, int]:
        """(summed negative log-likelihood, loss tokens) of a held-out batch."""
        self.engine.eval()
        parts = [self._nll(mb) for mb in self._micro(batch)]
        return sum(float(n) for n, _ in parts), sum(c for _, c in parts)

    def _nll(self, mb: dict) -> tuple[torch.Tensor, int]:
        inputs = model_inputs(mb, self.device, flash=uses_flash_attention(self.engine.module))
        logits = self.engine(**inputs, use_cache=False).logits
        lp = token_logprobs(logits[:, :-1], inputs["input_ids"][:, 1:])
        mask = mb["loss_mask_BT"][:, 1:].to(self.device)
        return -(lp * mask).sum(), int(mask.sum())

    def train_dpo(self, micro_batches: list[dict], ref_logps: list[torch.Tensor], num_pairs: int,
                  dpo: dict) -> dict:
        """One optimizer step of `dpo_loss` (settings `dpo`: beta, loss_type, label_smoothing).
        Micro-batch i holds k chosen rows then their k rejected rows, `ref_logps[i]` the
        reference's summed log-probs of the same 2k examples; `num_pairs` is global."""
        self.engine.train()
        metrics = []
        for mb, ref in zip(micro_batches, ref_logps):
            logps = sequence_logps(self.engine, mb, self.device)
            k = len(logps) // 2
            ref = ref.to(self.device)
            loss, m = dpo_loss(logps[:k], logps[k:], ref[:k], ref[k:], **dpo)
            self.engine.backward(loss * (k / num_pairs) * self.world_size, scale_wrt_gas=False)
            grad_norm = self._step()
            metrics.append({f"dpo/{key}": v for key, v in m.items()} | {"dpo/loss": loss.item()})
        self.version += 1
        return combine_shards(metrics) | {"dpo/grad_norm": grad_norm}

    @torch.no_grad()
    def sequence_logps(self, batch: dict) -> torch.Tensor:
        self.engine.eval()
        return sequence_logps(self.engine, batch, self.device).cpu()

    # ---- weights ----------------------------------------------------------------------

    def _weights(self):
        from rlhf.sync.export import WeightExport

        if getattr(self, "_export", None) is None:
            self._export = WeightExport(self.engine.module, zero3=self.optim.zero_stage == 3)
        return self._export

    def weight_metas(self) -> list:
        """Name, shape and dtype of every weight the generators load (Hugging Face names)."""
        return self._weights().metas()

    def named_weights(self, bucket_bytes: int = 1 << 30) -> Optional[dict]:
        """Full weights on rank 0 as CPU tensors (HF names, LoRA merged); every rank must call
        (ZeRO-3 gathers one bucket at a time)."""
        from rlhf.sync.buckets import plan_buckets

        out = {}
        for bucket in plan_buckets(self.weight_metas(), bucket_bytes):
            with self._weights().gathered(bucket) as tensors:
                if self.rank == 0:
                    out |= {n: t.cpu().clone() for n, t in tensors.items()}
        return out if self.rank == 0 else None

    def weights_nbytes(self) -> int:
        return sum(m.nbytes for m in self.weight_metas())

    def join_weight_group(self, addr: str, port: int, world_size: int, backend: str) -> None:
        """Rank 0 becomes rank 0 of the broadcast group with every generator worker."""
        from rlhf.sync.collective import weight_group

        self._weight_group = weight_group(addr, port, 0, world_size, backend)

    def broadcast_weights(self, plan: list) -> int:
        """Broadcast transport: bucket by bucket, every rank gathers (ZeRO-3), rank 0 sends."""
        from rlhf.sync.buckets import flatten
        from rlhf.sync.collective import broadcast_bucket

        for bucket in plan:
            with self._weights().gathered(bucket) as tensors:
                if self.rank == 0:
                    broadcast_bucket(self._weight_group, flatten(bucket, tensors))
        return len(plan)

    def device_uuid(self) -> Optional[str]:
        """This rank's GPU (None on CPU)."""
        from rlhf.sync.collective import device_uuid

        return device_uuid() if self.device == "cuda" else None

    def share_weights_ipc(self, generators: list, plan: list, version: int) -> int:
        """CUDA IPC transport (colocated): bucket by bucket, every rank gathers and shares its
        copy; each generator worker opens the copy on its own GPU and loads it in place."""
        import ray
        import torch.distributed as dist

        from rlhf.sync.buckets import flatten
        from rlhf.sync.collective import device_uuid, ipc_handle

        uuid = device_uuid()
        for i, bucket in enumerate(plan):
            with self._weights().gathered(bucket) as tensors:
                flat = flatten(bucket, tensors)  # a fresh buffer: it outlives the gather
            handles: list = [None] * self.world_size
            dist.all_gather_object(handles, (uuid, ipc_handle(flat)))
            if self.rank == 0:
                last = version if i == len(plan) - 1 else None
                ray.get([g.load_ipc_bucket.remote(dict(handles), bucket, last) for g in generators])
            dist.barrier()  # every generator has loaded before the buffers are freed
            del flat
        return len(plan)

    def publish_weights(self) -> Optional[list]:
        """CPU transport: rank 0 puts the weights in the object store once; returns [ref]."""
        import ray

        weights = self.named_weights()
        return [ray.put(weights)] if weights is not None else None

    def save_pretrained(self, path: str) -> None:
        """Hugging Face checkpoint (model + tokenizer), written by rank 0; every rank must call."""
        weights = self.named_weights()  # LoRA: merged into the base weights
        if self.rank == 0:
            module = self.engine.module
            module = module.get_base_model() if hasattr(module, "get_base_model") else module
            module.save_pretrained(path, state_dict=weights)
            load_tokenizer(self.model_path).save_pretrained(path)

    # ---- checkpoints -------------------------------------------------------------------

    def save_checkpoint(self, path: str) -> None:
        """Engine state (weights, optimizer, scheduler) of every rank plus this rank's RNG
        streams; every rank must call. On several nodes `path` must be shared storage."""
        self.engine.save_checkpoint(path, tag="engine", client_state={"version": self.version})
        torch.save(_rng_state(), os.path.join(path, f"rng_rank{self.rank}.pt"))

    def load_checkpoint(self, path: str) -> int:
        """Restores what `save_checkpoint` wrote; returns the policy version."""
        loaded, client = self.engine.load_checkpoint(path, tag="engine", load_optimizer_states=True,
                                                     load_lr_scheduler_states=True)
        if loaded is None:
            raise FileNotFoundError(f"no DeepSpeed engine state under {path}")
        _set_rng_state(torch.load(os.path.join(path, f"rng_rank{self.rank}.pt"), weights_only=False))
        self.version = client["version"]
        return self.version

    def _step(self) -> float:
        """engine.step(); returns the global gradient norm (before clipping) at an optimizer step."""
        boundary = self.engine.is_gradient_accumulation_boundary()
        norm = float("nan")
        if boundary and self.optim.zero_stage == 0:  # DeepSpeed reports no norm without ZeRO
            grads = [p.grad.detach().float().norm() for p in self.engine.module.parameters() if p.grad is not None]
            norm = float(torch.stack(grads).norm()) if grads else 0.0
        self.engine.step()
        if boundary and self.optim.zero_stage > 0:
            reported = self.engine.get_global_grad_norm()
            norm = float(reported) if reported is not None else norm
        return norm

    def _micro(self, batch: dict):
        n = batch["input_ids_BT"].shape[0]
        k = self.optim.micro_batch_size
        for i in range(0, n, k):
            yield {key: v[i:i + k] for key, v in batch.items()}


def _rng_state() -> dict:
    import random

    import numpy as np

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import random

    import numpy as np

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
