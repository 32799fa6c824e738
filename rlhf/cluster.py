"""Connecting to Ray: an existing cluster (ray.address or RAY_ADDRESS, as under `ray job
submit`) or a local one started for this run."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def init_ray(address: str | None, num_cpus: int | None, needed_cpus: float) -> None:
    import ray

    if ray.is_initialized():
        have = ray.cluster_resources().get("CPU", 0)
        if have < needed_cpus:
            log.warning("the Ray cluster has %s CPUs but this run's actors ask for %.1f: some will wait for "
                        "resources until others finish", have, needed_cpus)
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:  # the cluster (or `ray job submit --runtime-env-json`) defines the workers' environment
        ray.init(address=address, log_to_driver=True)
        log.info("connected to Ray at %s", address)
    else:
        # Workers import this package; ship the driver's PYTHONPATH so a source checkout works too,
        # and the kernel choices (rlhf.models, rlhf.scoring) so every role runs the ones the driver was given.
        shipped = ("PYTHONPATH", "RLHF_CACHE", "RLHF_ATTENTION", "RLHF_LOGPROBS", "RLHF_KERNELS")
        env = {k: os.environ[k] for k in shipped if k in os.environ}
        runtime_env = {"env_vars": env} if env else None
        cpus = num_cpus or max(int(needed_cpus + 0.999), os.cpu_count() or 1)
        ray.init(num_cpus=cpus, include_dashboard=False, runtime_env=runtime_env)
        log.info("started a local Ray cluster with %d CPUs", cpus)
