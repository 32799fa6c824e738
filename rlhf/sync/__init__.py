"""Weight sync, trainer -> generators, behind one interface (`WeightTransport.sync`).

Transports, chosen from where the actors run (`make_transport`, `generator.weight_sync=auto`):
- `ipc` (colocated GPUs): each trainer rank shares its parameters (or, under ZeRO-3 and LoRA,
  bucket buffers) through CUDA IPC with the generator workers on its GPU; no copy through the
  host, and on GPU the engines replay the copies their first load made (`replay`);
- `broadcast` (split GPUs): trainer rank 0 broadcasts buckets to every generator worker over
  a group of their own (NCCL; gloo on CPU, which is how the tests run it);
- `object_store` (CPU): rank 0 puts the weights in Ray's object store once, every generator reads them.

Each transport's module (`ipc`, `broadcast`, `object_store`) holds its three sides: the
driver's transport class, the trainer's functions and the engine's. `endpoints` has the
actors' remote methods that call them; `buckets`, `export`, `collective` and `replay` are the
pieces they share.
"""

from rlhf.sync.choose import choose_transport, make_transport
from rlhf.sync.stats import SyncStats, WeightTransport

__all__ = ["SyncStats", "WeightTransport", "choose_transport", "make_transport"]
