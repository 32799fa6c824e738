"""The trainer's CUDA allocator settings: after `use_expandable_segments` new memory lands in
expandable segments, except what `shareable_allocations` allocates (memory a colocated engine
maps by CUDA IPC), and the setting comes back after it. Skipped without a CUDA device."""

import os

import pytest
import torch

from rlhf.actors import runtime

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
              pytest.mark.skipif("PYTORCH_CUDA_ALLOC_CONF" in os.environ, reason="the allocator is set by hand")]


def _segment_of(t: torch.Tensor) -> dict:
    ptr = t.data_ptr()
    for seg in torch.cuda.memory._snapshot()["segments"]:
        if seg["address"] <= ptr < seg["address"] + seg["total_size"]:
            return seg
    raise AssertionError("no segment holds the tensor")


def test_trainer_memory_expands_and_ipc_memory_does_not():
    try:
        runtime.use_expandable_segments()
        grown = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")
        with runtime.shareable_allocations():
            shared = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")
        after = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")
        assert _segment_of(grown)["is_expandable"] and _segment_of(after)["is_expandable"]
        assert not _segment_of(shared)["is_expandable"]
    finally:
        runtime._set_expandable(False)
