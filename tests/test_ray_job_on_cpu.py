"""`ray job submit` against a local head bound to loopback runs the DAPO recipe to SUCCEEDED."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ray_job_submit_runs_dapo(tmp_path):
    import ray

    ray.shutdown()  # this test starts (and stops) its own cluster
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token")
    gcs, dash = _free_port(), _free_port()
    temp = Path("/tmp") / f"rayjob{os.getpid()}"  # short: Ray's socket paths have a length limit
    ray_bin = str(Path(sys.executable).with_name("ray"))
    subprocess.run([ray_bin, "start", "--head", f"--port={gcs}", "--node-ip-address=127.0.0.1",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=4",
                    f"--temp-dir={temp}", "--disable-usage-stats"], env=env, check=True, capture_output=True)
    try:
        out_dir = tmp_path / "runs"
        runtime_env = {"env_vars": {"RLHF_CACHE": str(tmp_path / "cache"), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
                       "excludes": ["runs", ".git", "*.egg-info"]}
        job = subprocess.run(
            [ray_bin, "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", str(ROOT),
             "--runtime-env-json", json.dumps(runtime_env), "--",
             "python", "-m", "rlhf.recipes.dapo", "run.steps=2", "warmstart.steps=5", "data.num_eval=16",
             "rollout.prompts_per_step=4", "rollout.gen_prompts=4", "rollout.n=4", "run.progress=false",
             f"run.output_dir={out_dir}", "run.name=job"],
            env=env, capture_output=True, text=True, timeout=800)
        log = job.stdout + job.stderr
        assert job.returncode == 0 and "succeeded" in log, log[-3000:]
        summary = json.loads((out_dir / "job" / "summary.json").read_text())
        assert summary["steps"] == 2
        # Every node Ray registered is on loopback.
        nodes = subprocess.run([ray_bin, "list", "nodes", "--address", f"127.0.0.1:{gcs}", "--format", "json"],
                               env=env, capture_output=True, text=True)
        if nodes.returncode == 0:
            assert all(n["node_ip"] == "127.0.0.1" for n in json.loads(nodes.stdout))
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True)
        time.sleep(1)
