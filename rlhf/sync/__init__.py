"""Weight sync, trainer -> generators, behind one interface (`WeightTransport.sync`).

Transports: `object_store` (CPU and tests: rank 0 puts the weights in Ray's object store
once, every generator reads them). The choice follows the placement (`make_transport`).
"""

from rlhf.sync.base import SyncStats, WeightTransport, make_transport

__all__ = ["SyncStats", "WeightTransport", "make_transport"]
