"""Per-process setup shared by every role: threads, seeds, device."""

from __future__ import annotations

import os
import random


def setup_process(seed: int, threads: int = 0) -> str:
    """Seed python/torch, set torch's thread count (0: all cores), return the device to use."""
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)
    random.seed(seed)
    torch.manual_seed(seed)
    return "cuda" if torch.cuda.is_available() and os.environ.get("CUDA_VISIBLE_DEVICES", "") != "" else "cpu"


def node_ip() -> str:
    """This node's address as Ray registered it (the rendezvous address of collective groups)."""
    import ray

    return ray.util.get_node_ip_address()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]
