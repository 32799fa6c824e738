"""Recorded weight loads: the copies a model's own `load_weights` makes from a set of source
tensors into its parameters, recorded once and replayed at every later sync.

A colocated sync loads from the same shared memory every time (the trainer's parameters, or a
bucket buffer shared once), so every copy a load makes has the same destination view and the
same source view each time; only the values differ. A model's `load_weights` spends most of
its time mapping names and calling a weight loader per tensor (vLLM: about 30 ms at 1.5B); the
replay is the copies alone, batched into `torch._foreach_copy_` calls.

A load is recorded only if all it does with the sources is take views of them and copy those
into the model's parameters or buffers (constant fills of those are replayed too: vLLM zeroes
padded vocabulary rows). Refused: a tensor computed from a source (a concatenation, a cast
through `.to`, a quantiser), a value read on the host (`.item()`), a write into a source or into
a tensor the model does not own, a re-allocated parameter (`param.data = ...`). Then `record`
returns None with the reason, and the caller keeps calling the load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_COPY = torch.ops.aten.copy_.default
_CONSTANT_WRITES = (torch.ops.aten.fill_.Scalar, torch.ops.aten.zero_.default)  # e.g. zeroing padded vocab rows


def _storage(t) -> Optional[int]:
    return t.untyped_storage().data_ptr() if isinstance(t, torch.Tensor) else None


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, torch.Tensor)]
    return []


def _written(func, args, kwargs) -> list[torch.Tensor]:
    """The tensors an op writes to, from its schema (`Tensor(a!)` arguments)."""
    out = []
    for i, arg in enumerate(func._schema.arguments):
        if arg.alias_info is not None and arg.alias_info.is_write:
            value = args[i] if i < len(args) else kwargs.get(arg.name)
            out += _tensors(value)
    return out


class _Recorder(TorchDispatchMode):
    def __init__(self, sources: set[int], targets: set[int]):
        super().__init__()
        self.sources, self.targets = sources, targets
        self.steps: list[tuple] = []  # ("copy", dst, src) or ("write", op, args, kwargs), in order
        self.refused: Optional[str] = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.refused is None:
            self.refused = self._check(func, args, kwargs)
        return func(*args, **kwargs)

    def _check(self, func, args, kwargs) -> Optional[str]:
        written = {_storage(t) for t in _written(func, args, kwargs)}
        read = {_storage(t) for a in list(args) + list(kwargs.values()) for t in _tensors(a)}
        if func is _COPY and _storage(args[1]) in self.sources:
            if written <= self.targets:
                self.steps.append(("copy", args[0], args[1]))
                return None
            return "a source is copied into a tensor the model does not own"
        if func in _CONSTANT_WRITES and written <= self.targets:
            self.steps.append(("write", func, args, kwargs))
            return None
        if written & (self.sources | self.targets):
            return f"{func} writes into the model or a source"
        if read & self.sources and not func.is_view:
            return f"{func} computes from a source"
        return None


@dataclass
class RecordedLoad:
    """The writes of one load in order (copies from the sources, constant fills), and the model
    tensors' addresses they were recorded against."""
    steps: list[tuple]
    addresses: list[tuple[torch.Tensor, int]]

    @property
    def num_copies(self) -> int:
        return sum(step[0] == "copy" for step in self.steps)

    def valid(self) -> bool:
        """False once any parameter or buffer of the model has moved (the copies would miss it)."""
        return all(t.data_ptr() == ptr for t, ptr in self.addresses)

    @torch.no_grad()
    def replay(self) -> None:
        """The same writes again: each run of consecutive copies as one `_foreach_copy_`."""
        dst: list = []
        src: list = []
        for step in self.steps + [("end",)]:
            if step[0] == "copy":
                dst.append(step[1])
                src.append(step[2])
                continue
            if dst:
                torch._foreach_copy_(dst, src)
                dst, src = [], []
            if step[0] == "write":
                step[1](*step[2], **step[3])


def model_tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    return list(model.parameters()) + list(model.buffers())


def record(load: Callable[[], object], sources: list[torch.Tensor],
           model: torch.nn.Module) -> tuple[Optional[RecordedLoad], Optional[str]]:
    """Runs `load()` (which loads `sources` into `model`) and records its copies: returns
    (the recorded load, None), or (None, why it cannot be replayed). The load happens either way."""
    owned = model_tensors(model)
    before = [(t, t.data_ptr()) for t in owned]
    recorder = _Recorder({_storage(s) for s in sources}, {_storage(t) for t in owned})
    with torch.no_grad(), recorder:
        load()
    if recorder.refused is None and any(t.data_ptr() != ptr for t, ptr in before):
        recorder.refused = "the load re-allocated a parameter"
    if recorder.refused is None and not any(step[0] == "copy" for step in recorder.steps):
        recorder.refused = "the load copied nothing from the sources"
    if recorder.refused is not None:
        return None, recorder.refused
    return RecordedLoad(recorder.steps, before), None
