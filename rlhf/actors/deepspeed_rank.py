"""One data-parallel rank of a trained role (policy, critic, reward model): DeepSpeed ZeRO
everywhere (gloo on CPU, NCCL on GPU). A role adds its model (`_load_model`) and its steps.

The driver hands every rank its shard of each mini-batch together with the mini-batch's
GLOBAL token/sequence (or pair) counts, so the summed gradient over micro-batches and ranks
is exactly the gradient of the loss aggregated over the whole mini-batch (DeepSpeed averages
over ranks, hence the `* world_size` in `_backward_and_step`).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from rlhf.actors.runtime import (open_rendezvous, rendezvous_store, setup_process, shareable_allocations,
                                 use_expandable_segments)
from rlhf.metrics import combine_shards
from rlhf.models import load_tokenizer, resolve_dtype
from rlhf.quantization import save_plain_checkpoint
from rlhf.sync.export import WeightExport


@dataclass
class OptimSettings:
    lr: float
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    zero_stage: int = 0
    offload: bool = False
    micro_batch_size: int = 32  # rows per forward of a padded (row-count) micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step on one rank, where a fixed number
    max_tokens: int = 4096  # tokens per packed micro-batch a rank builds itself (`rlhf.packing`)
    gradient_checkpointing: bool = False
    warmup_steps: int = 0  # linear warmup from 0 to lr
    decay_steps: int = 0  # > 0: then decay linearly to 0 at this step; 0: constant after warmup


class DeepSpeedRank:
    def __init__(self, model_path: str, optim: OptimSettings, rank: int, world_size: int,
                 dtype: str = "auto", seed: int = 0, threads: int = 0, lora: Optional[dict] = None,
                 quantization: Optional[dict] = None):
        """`lora`: `rlhf.models.apply_lora` arguments for a role that trains adapters, or None;
        `quantization`: `rlhf.quantization` settings of a 4-bit base under them (QLoRA), or None."""
        self.device = setup_process(seed, threads)
        self.model_path, self.optim, self.rank, self.world_size = model_path, optim, rank, world_size
        self.lora, self.quantization = lora, quantization
        self.dtype = resolve_dtype(dtype)
        self.engine = None
        self.version = 0  # optimizer steps taken: the policy version
        self._skips = 0  # optimizer steps skipped (non-finite gradients) since the last report

    def rendezvous(self) -> tuple[str, int]:
        """Called on rank 0: the address and port a group it hosts meets at (this node's address
        as Ray registered it, so any node can reach it; nothing listens on other interfaces)."""
        return open_rendezvous()

    def init_distributed(self, master_addr: str, master_port: int) -> None:
        """Called on every rank at once: joins the group and builds the DeepSpeed engine."""
        import deepspeed
        import torch.distributed as dist

        os.environ.update(RANK=str(self.rank), WORLD_SIZE=str(self.world_size), LOCAL_RANK="0",
                          MASTER_ADDR=master_addr, MASTER_PORT=str(master_port))
        backend = "nccl" if self.device == "cuda" else "gloo"
        store = rendezvous_store(master_addr, master_port, self.world_size, self.rank)
        dist.init_process_group(backend, store=store, rank=self.rank, world_size=self.world_size)
        deepspeed.init_distributed(dist_backend=backend)  # adopts the group
        with shareable_allocations():  # the parameters, which a colocated engine may map (CUDA IPC)
            model = self._load_model()
            if self.optim.gradient_checkpointing:
                model.gradient_checkpointing_enable()
            o = self.optim
            trained = [p for p in model.parameters() if p.requires_grad]  # LoRA: the adapters only
            optimizer = torch.optim.AdamW(trained, lr=o.lr, weight_decay=o.weight_decay)
            config = deepspeed_config(o, self.world_size, bf16=self.dtype == torch.bfloat16)
            self.engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
        use_expandable_segments()  # activations and logits from here on

    def _load_model(self) -> torch.nn.Module:
        """The trained module, on `self.device` in `self.dtype`."""
        raise NotImplementedError

    # ---- steps -------------------------------------------------------------------------

    def _micro(self, batch: dict):
        n = batch["input_ids_BT"].shape[0]
        k = self.optim.micro_batch_size
        for i in range(0, n, k):
            yield {key: v[i:i + k] for key, v in batch.items()}

    def _accumulate(self, micro_batches: list, loss_of) -> tuple[float, list[dict]]:
        """One optimizer step over `micro_batches`, however many there are (every rank gets the
        same number): `loss_of(item)` gives a micro-batch's (loss, metrics or None), the loss
        already normalised by the step's global count. Returns the gradient norm and the
        metrics given (None for a micro-batch without data, e.g. `rlhf.packing.EMPTY`).
        The last micro-batch is the accumulation boundary, whatever DeepSpeed's config counts."""
        metrics = []
        for i, item in enumerate(micro_batches):
            self.engine.set_gradient_accumulation_boundary(i == len(micro_batches) - 1)
            loss, m = loss_of(item)
            grad_norm = self._backward_and_step(loss)
            if m is not None:
                metrics.append(m)
        return grad_norm, metrics

    def _backward_and_step(self, loss: torch.Tensor) -> float:
        """Backward of a micro-batch's loss, already normalised by its global count; returns
        the gradient norm at an optimizer step (see `_step`)."""
        self.engine.backward(loss * self.world_size, scale_wrt_gas=False)
        return self._step()

    def _pair_step(self, micro_batches: list[dict], num_pairs: int, prefix: str, scores, pair_loss) -> dict:
        """One optimizer step of a preference loss. Micro-batch i holds k chosen rows then their
        k rejected rows (of which `pairs_counted` count, where given: 0 in an empty micro-batch);
        `scores(mb)` gives one score per row, `pair_loss(i, chosen, rejected)` the loss and
        metrics of micro-batch i's pairs; `num_pairs` is the step's global count."""
        self.engine.train()
        def loss_of(item):
            i, mb = item
            s = scores(mb)
            k = len(s) // 2
            counted = int(mb["pairs_counted"]) if "pairs_counted" in mb else k
            loss, m = pair_loss(i, s[:k], s[k:])
            metrics = {f"{prefix}/{key}": v for key, v in m.items()} | {f"{prefix}/loss": loss.item()}
            return loss * (counted / num_pairs), (metrics if counted else None)

        grad_norm, metrics = self._accumulate(list(enumerate(micro_batches)), loss_of)
        self.version += 1
        return combine_shards(metrics) | {f"{prefix}/grad_norm": grad_norm,
                                          f"{prefix}/skipped_steps": self._take_skips()}

    def _step(self) -> float:
        """engine.step(); returns the global gradient norm (before clipping) at an optimizer step.

        A step whose gradients are not finite (a NaN or infinite loss on any rank: the gradients
        are all-reduced, so every rank sees it) is skipped on every rank: no update, no optimizer
        or scheduler state change. ZeRO 1-3 skip it inside DeepSpeed (an invalid gradient norm is
        an overflow); without ZeRO it is skipped here (`_skipped_update`)."""
        boundary = self.engine.is_gradient_accumulation_boundary()
        norm = float("nan")
        skipped_before = self.engine.skipped_steps
        skip = contextlib.nullcontext()
        if boundary and self.optim.zero_stage == 0:  # DeepSpeed reports no norm without ZeRO
            params = [p for p in self.engine.module.parameters() if p.grad is not None]
            norm = float(torch.stack([p.grad.detach().float().norm() for p in params]).norm()) if params else 0.0
            if not math.isfinite(norm):
                skip = _skipped_update(self.engine.optimizer, params)
        with skip:
            self.engine.step()
        if boundary and self.optim.zero_stage > 0:
            reported = self.engine.get_global_grad_norm()
            norm = float(reported) if reported is not None else norm
        self._skips += self.engine.skipped_steps - skipped_before
        return norm

    def _take_skips(self) -> float:
        """Optimizer steps skipped (non-finite gradients) since the last call."""
        skipped, self._skips = self._skips, 0
        return float(skipped)

    # ---- weights and checkpoints -------------------------------------------------------

    def _weight_export(self) -> WeightExport:
        """The module's weights under Hugging Face names (LoRA merged), bucket by bucket."""
        if getattr(self, "_export", None) is None:
            self._export = WeightExport(self.engine.module, zero3=self.optim.zero_stage == 3)
        return self._export

    def named_weights(self, bucket_bytes: int = 1 << 30) -> Optional[dict]:
        """Full weights on rank 0 as CPU tensors (HF names, LoRA merged); every rank must call
        (ZeRO-3 gathers one bucket at a time)."""
        return self._weight_export().cpu_copy(bucket_bytes, keep=self.rank == 0)

    def save_pretrained(self, path: str) -> None:
        """Hugging Face checkpoint (model + tokenizer), written by rank 0; every rank must call."""
        weights = self.named_weights()  # LoRA: merged into the base weights
        if self.rank == 0:
            module = self.engine.module
            module = module.get_base_model() if hasattr(module, "get_base_model") else module
            if self.quantization:  # transformers would write the 4-bit state: write the dequantised one
                save_plain_checkpoint(module, weights, path)
            else:
                module.save_pretrained(path, state_dict=weights)
            load_tokenizer(self.model_path).save_pretrained(path)

    def save_checkpoint(self, path: str) -> None:
        """Engine state (weights, optimizer, scheduler) of every rank plus this rank's RNG
        streams; every rank must call. On several nodes `path` must be shared storage."""
        self.engine.save_checkpoint(path, tag="engine", client_state={"version": self.version})
        torch.save(rng_state(), os.path.join(path, f"rng_rank{self.rank}.pt"))

    def load_checkpoint(self, path: str) -> int:
        """Restores what `save_checkpoint` wrote, unpickling nothing; returns the policy version."""
        from rlhf.checkpoint import refuse_pickles, safe_load

        refuse_pickles(self.engine.checkpoint_engine)
        loaded, client = self.engine.load_checkpoint(path, tag="engine", load_optimizer_states=True,
                                                     load_lr_scheduler_states=True)
        if loaded is None:
            raise FileNotFoundError(f"no DeepSpeed engine state under {path}")
        set_rng_state(safe_load(os.path.join(path, f"rng_rank{self.rank}.pt")))
        self.version = client["version"]
        return self.version


@contextlib.contextmanager
def _skipped_update(optimizer, params: list):
    """An engine step without ZeRO that changes nothing: the gradients are zeroed (DeepSpeed
    still clips them), the optimizer's step does nothing (AdamW would still move the weights
    by its momentum), and `overflow` tells DeepSpeed to skip the scheduler and count the step."""
    for p in params:
        p.grad.zero_()
    optimizer.step, optimizer.overflow = (lambda *args, **kwargs: None), True
    try:
        yield
    finally:
        del optimizer.step  # the class's step again
        optimizer.overflow = False


def deepspeed_config(o: OptimSettings, world_size: int, bf16: bool) -> dict:
    zero: dict = {"stage": o.zero_stage}
    if o.offload:
        zero["offload_optimizer"] = {"device": "cpu"}
    config = {
        "train_micro_batch_size_per_gpu": o.micro_batch_size,
        "gradient_accumulation_steps": o.grad_accum,
        "train_batch_size": o.micro_batch_size * o.grad_accum * world_size,
        "gradient_clipping": o.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        "zero_allow_untested_optimizer": True,
        # ZeRO-Offload steps the client torch AdamW on the CPU copy (DeepSpeed's CPU Adam would
        # need a JIT build); without this DeepSpeed refuses a client optimizer with offload
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 2**31 - 1,
    }
    if o.decay_steps:  # DeepSpeed's WarmupDecayLR needs a warmup of at least one step
        config["scheduler"] = {"type": "WarmupDecayLR", "params": {
            "warmup_min_lr": 0.0, "warmup_max_lr": o.lr, "warmup_num_steps": max(1, o.warmup_steps),
            "warmup_type": "linear", "total_num_steps": o.decay_steps}}
    elif o.warmup_steps:
        config["scheduler"] = {"type": "WarmupLR", "params": {
            "warmup_min_lr": 0.0, "warmup_max_lr": o.lr, "warmup_num_steps": o.warmup_steps,
            "warmup_type": "linear"}}
    return config


def rng_state() -> dict:
    """Every random stream of this process (python, numpy, torch, CUDA) as tensors and plain
    data, so that it loads with `weights_only=True`."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
