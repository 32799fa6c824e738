"""A Ray cluster of one or more nodes on this machine, all on loopback, for tests that need
`ray start` (job submission, several nodes). Each node is a `ray start --block` process in
its own session, so stopping it kills exactly its processes and nothing else's."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
ENV = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_count(gcs: int) -> int:
    out = subprocess.run([RAY, "list", "nodes", "--address", f"127.0.0.1:{gcs}", "--format", "json",
                          "--filter", "state=ALIVE"], env=ENV, capture_output=True, text=True)
    import json

    try:  # while the head starts, `ray list` may exit 0 with a plain-text message
        return len(json.loads(out.stdout)) if out.returncode == 0 else -1
    except json.JSONDecodeError:
        return -1


@contextmanager
def local_cluster(cpus_per_node: list[int], timeout_s: float = 120):
    """Yields (gcs_address, dashboard_url) once every node has registered."""
    gcs, dash = free_port(), free_port()
    temp = Path("/tmp") / f"rayt{os.getpid()}"  # short: Ray's socket paths have a length limit
    common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats", "--block"]
    head = [RAY, "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
            f"--num-cpus={cpus_per_node[0]}", f"--temp-dir={temp}"] + common
    procs = [subprocess.Popen(head, env=ENV, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + timeout_s
        while _node_count(gcs) < 1:
            assert time.time() < deadline, "the Ray head did not start"
            time.sleep(1)
        for cpus in cpus_per_node[1:]:
            worker = [sys.executable, str(Path(__file__).with_name("ray_worker_node.py")), "start",
                      f"--address=127.0.0.1:{gcs}", f"--num-cpus={cpus}"]
            procs.append(subprocess.Popen(worker + common,
                                          env=ENV, start_new_session=True, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        while _node_count(gcs) < len(cpus_per_node):
            assert time.time() < deadline, "not every Ray node registered"
            time.sleep(1)
        yield f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}"
    finally:
        for p in reversed(procs):  # a node drains for up to 30 s on SIGTERM: give it 5
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
                try:
                    os.killpg(p.pid, sig)
                    p.wait(timeout=wait)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue
