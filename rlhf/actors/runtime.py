"""Per-process setup shared by every role: threads, seeds, device."""

from __future__ import annotations

import contextlib
import logging
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


# Whether new CUDA allocations of this process go into expandable segments (PYTORCH_CUDA_ALLOC_CONF).
_expandable = "expandable_segments:true" in os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "").replace(" ", "").lower()


def _set_expandable(on: bool) -> None:
    global _expandable
    import torch

    settings = getattr(torch._C, "_accelerator_setAllocatorSettings", None)  # torch >= 2.9
    if settings is None:
        settings = torch.cuda.memory._set_allocator_settings
    settings(f"expandable_segments:{on}")
    _expandable = on


def use_expandable_segments() -> None:
    """A trainer rank's later CUDA allocations go into expandable segments, which grow in place,
    so the blocks one micro-batch frees can serve the next one's larger tensors (where a 0.5B
    update ran out of memory beside a colocated engine, 8.3 GiB of the cache was free but
    fragmented: BENCHMARKS.md, fourth round). Called once the parameters exist; nothing is
    changed where PYTORCH_CUDA_ALLOC_CONF is set. A torch that refuses the setting is warned
    about, not fatal: it only changes how memory is cached."""
    import torch

    if not torch.cuda.is_available() or "PYTORCH_CUDA_ALLOC_CONF" in os.environ:
        return
    try:
        _set_expandable(True)
    except (AttributeError, RuntimeError) as e:
        logging.getLogger(__name__).warning("CUDA allocator: expandable segments not set (%s)", e)


@contextlib.contextmanager
def shareable_allocations():
    """Allocations another process maps by CUDA IPC go into ordinary segments: an expandable
    segment's memory is shared by another mechanism, which colocated processes may not be
    permitted to use."""
    was = _expandable
    if was:
        _set_expandable(False)
    try:
        yield
    finally:
        if was:
            _set_expandable(True)


def node_ip() -> str:
    """This node's address as Ray registered it (the rendezvous address of collective groups)."""
    import ray

    return ray.util.get_node_ip_address()


# Listening sockets of rendezvous stores this process will host, by port (see `open_rendezvous`).
_LISTENERS: dict = {}


def open_rendezvous() -> tuple[str, int]:
    """A listening socket on this node's registered address (127.0.0.1 when Ray is on
    loopback; never all interfaces), kept until the store that uses it starts: returns
    (address, port) for every member of the group to meet at."""
    import socket

    addr = node_ip()
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((addr, 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    _LISTENERS[port] = sock
    return addr, port


def rendezvous_store(addr: str, port: int, world_size: int, rank: int, timeout_s: float = 600.0):
    """The TCP store of a process group; rank 0 hosts it on the socket `open_rendezvous` bound
    in this process (torch's own server would listen on every interface)."""
    from datetime import timedelta

    import torch.distributed as dist

    timeout = timedelta(seconds=timeout_s)
    if rank != 0:
        return dist.TCPStore(addr, port, world_size, is_master=False, timeout=timeout)
    sock = _LISTENERS.pop(port, None)
    if sock is None:
        raise RuntimeError(f"rank 0 hosts the rendezvous store at {addr}:{port}, but this process did not open it "
                           "(call open_rendezvous in the same process first)")
    try:
        return dist.TCPStore(addr, port, world_size, is_master=True, timeout=timeout, master_listen_fd=sock.fileno())
    finally:
        sock.detach()  # the store owns the socket now


def quiet_libraries() -> None:
    """Per-actor download/loading bars and banners would drown the driver's progress bar."""
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
