"""`ray start` for a second node on this machine, kept on loopback.

With RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (what keeps Ray on 127.0.0.1 in tests) the `ray start`
command refuses to join a cluster, and with 1 it resolves 127.0.0.1 to the host's interface
address. This entry point allows the join and pins this process's address lookups to
loopback; the node's own processes inherit the environment variable and stay there.
Usage: python tests/ray_worker_node.py start --address=127.0.0.1:PORT ... --block
"""

import sys

from ray._private import ray_constants, services
from ray.scripts.scripts import main

ray_constants.ENABLE_RAY_CLUSTER = True
services.node_ip_address_from_perspective = lambda *args, **kwargs: "127.0.0.1"

if __name__ == "__main__":
    sys.argv[0] = "ray"
    sys.exit(main())
