"""The trainer's weights as the generator's model names them, produced bucket by bucket.

A LoRA policy (peft) is exported merged: `W = W_base + scaling * B @ A` under the base
model's names, so the generator always runs a plain model. Under ZeRO-3 each bucket's source
parameters are gathered, used and released before the next bucket: no rank ever holds more
than one bucket of unsharded weights on top of its shard.
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterator, Optional

import torch

from rlhf.quantization import dequantized, full_shape_dtype, is_quantized
from rlhf.sync.buckets import TensorMeta, plan_buckets

PEFT_PREFIX = "base_model.model."
_LORA = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])\.(?P<adapter>[^.]+)\.weight$")


def hf_sources(param_names: list[str]) -> dict[str, tuple[str, ...]]:
    """Hugging Face weight name -> the trainer parameters it is computed from: itself for a
    plain model; for a LoRA-wrapped linear `(base, lora_A, lora_B)`. Order follows the model."""
    names = list(param_names)
    lora: dict[str, dict[str, str]] = {}
    for n in names:
        m = _LORA.match(n)
        if m:
            lora.setdefault(m["module"], {})[m["ab"]] = n
    out: dict[str, tuple[str, ...]] = {}
    for n in names:
        if _LORA.match(n):
            continue
        if ".modules_to_save." in n or ".original_module." in n:
            raise NotImplementedError(f"{n}: peft modules_to_save is not supported by the weight export")
        hf = n.removeprefix(PEFT_PREFIX).replace(".base_layer.", ".")
        module = n.split(".base_layer.")[0] if ".base_layer." in n else None
        if module is not None and n.endswith(".weight") and module in lora:
            ab = lora[module]
            out[hf] = (n, ab["A"], ab["B"])
        else:
            out[hf] = (n,)
    return out


def merged_lora_weight(base: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float) -> torch.Tensor:
    """`base + scaling * lora_b @ lora_a`, computed in fp32 and returned in the base's dtype."""
    return (base.float() + scaling * (lora_b.float() @ lora_a.float())).to(base.dtype)


class WeightExport:
    """Bucketed export of a (possibly LoRA-wrapped, possibly ZeRO-3-sharded) module."""

    def __init__(self, module: torch.nn.Module, zero3: bool):
        self.module, self.zero3 = module, zero3
        self.params = dict(module.named_parameters())
        self.sources = hf_sources(list(self.params))
        self.scaling = {}
        for hf, src in self.sources.items():
            if len(src) == 3:
                adapter = _LORA.match(src[1])["adapter"]
                self.scaling[hf] = module.get_submodule(src[0].split(".base_layer.")[0]).scaling[adapter]

    def metas(self) -> list[TensorMeta]:
        out = []
        for hf, src in self.sources.items():
            out.append(TensorMeta(hf, *full_shape_dtype(self.params[src[0]])))
        return out

    def plain_tensors(self) -> Optional[dict[str, torch.Tensor]]:
        """Every weight by its Hugging Face name as the parameter itself (no copy), where the
        export is the parameters as they are: no ZeRO-3 gather, no LoRA merge, no 4-bit base.
        None otherwise."""
        if self.zero3 or any(len(src) > 1 for src in self.sources.values()):
            return None
        out = {hf: self.params[src[0]] for hf, src in self.sources.items()}
        if any(is_quantized(p) for p in out.values()):
            return None
        return {hf: p.detach() for hf, p in out.items()}

    def addresses(self) -> list[int]:
        """Where each exported weight's (first) source parameter lives now: a change means a
        parameter was re-allocated since."""
        return [self.params[src[0]].data_ptr() for src in self.sources.values()]

    @contextlib.contextmanager
    def gathered(self, bucket: list[TensorMeta]) -> Iterator[dict[str, torch.Tensor]]:
        """`with export.gathered(bucket) as tensors:` the bucket's full tensors (on the
        parameters' device, possibly views of them: copy to keep), released on exit. Every
        data-parallel rank must enter it (ZeRO-3 gathers are collective)."""
        params = [self.params[s] for m in bucket for s in self.sources[m.name]]
        gather = contextlib.nullcontext()
        if self.zero3:
            import deepspeed

            gather = deepspeed.zero.GatheredParameters(params, modifier_rank=None)
        with torch.no_grad(), gather:
            out = {}
            for m in bucket:
                src = [dequantized(self.params[s]) for s in self.sources[m.name]]  # QLoRA: the base in full
                out[m.name] = merged_lora_weight(*src, self.scaling[m.name]) if len(src) == 3 else src[0]
            yield out

    def cpu_copy(self, bucket_bytes: int, keep: bool) -> Optional[dict[str, torch.Tensor]]:
        """Every weight as a CPU tensor where `keep` (None elsewhere), gathered one bucket of
        `bucket_bytes` at a time. Every data-parallel rank must call."""
        out = {}
        for bucket in plan_buckets(self.metas(), bucket_bytes):
            with self.gathered(bucket) as tensors:
                if keep:
                    out |= {n: t.cpu().clone() for n, t in tensors.items()}
        return out if keep else None
