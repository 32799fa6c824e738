"""Per-process setup shared by every role: threads, seeds, device."""

from __future__ import annotations

import os
import random


def setup_process(seed: int, threads: int = 0) -> str:
    """Seed python/torch, set torch's thread count (0: all cores), quiet library progress
    bars (the driver's bar is the one to read), return the device to use."""
    quiet_libraries()
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)
    random.seed(seed)
    torch.manual_seed(seed)
    # CUDA_VISIBLE_DEVICES="" (Ray's way of giving an actor no GPU) hides the GPUs; unset shows them all
    return "cuda" if torch.cuda.is_available() and os.environ.get("CUDA_VISIBLE_DEVICES") != "" else "cpu"


def node_ip() -> str:
    """This node's address as Ray registered it (the rendezvous address of collective groups)."""
    import ray

    return ray.util.get_node_ip_address()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def quiet_libraries() -> None:
    """Per-actor download/loading bars and banners would drown the driver's progress bar."""
    import logging

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
    logging.getLogger("DeepSpeed").setLevel(logging.ERROR)
    import torch

    if not torch.cuda.is_available():  # tell DeepSpeed instead of letting it warn after probing
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
