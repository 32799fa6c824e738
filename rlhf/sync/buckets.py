"""Weights travel in buckets: consecutive tensors of one dtype flattened into one buffer, so a
sync is a few large transfers rather than hundreds of small ones, and a ZeRO-3 trainer only
ever gathers one bucket's parameters at a time."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TensorMeta:
    name: str  # Hugging Face name, as the generator's model loads it
    shape: tuple
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


def plan_buckets(metas: list[TensorMeta], bucket_bytes: int) -> list[list[TensorMeta]]:
    """Consecutive tensors grouped into buckets of one dtype and at most `bucket_bytes` (a
    tensor larger than that travels alone). Order is kept, every tensor appears once."""
    if bucket_bytes <= 0:
        raise ValueError(f"bucket size must be positive, got {bucket_bytes} bytes")
    buckets: list[list[TensorMeta]] = []
    size = 0
    for m in metas:
        fits = buckets and buckets[-1][0].dtype == m.dtype and size + m.nbytes <= bucket_bytes
        if fits:
            buckets[-1].append(m)
            size += m.nbytes
        else:
            buckets.append([m])
            size = m.nbytes
    return buckets


def bucket_nbytes(bucket: list[TensorMeta]) -> int:
    return sum(m.nbytes for m in bucket)


def flatten(bucket: list[TensorMeta], tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """One contiguous 1-D buffer holding the bucket's tensors in plan order."""
    return torch.cat([tensors[m.name].reshape(-1).to(m.dtype) for m in bucket])


def unflatten(bucket: list[TensorMeta], flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Views into `flat`, one per tensor of the bucket (no copy)."""
    if flat.numel() != sum(m.numel for m in bucket):
        raise ValueError(f"buffer has {flat.numel()} elements, the bucket {sum(m.numel for m in bucket)}")
    out, offset = {}, 0
    for m in bucket:
        out[m.name] = flat[offset:offset + m.numel].view(m.shape)
        offset += m.numel
    return out
