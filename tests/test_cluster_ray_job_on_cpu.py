"""`ray job submit` against a local head bound to loopback runs the DAPO recipe to SUCCEEDED."""

import json
import subprocess
from pathlib import Path

import pytest
from local_cluster import ENV, RAY, local_cluster

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ray_job_submit_runs_dapo(tmp_path):
    import ray

    ray.shutdown()  # this test starts (and stops) its own cluster
    with local_cluster([4]) as (gcs, dashboard):
        out_dir = tmp_path / "runs"
        runtime_env = {"env_vars": {"RLHF_CACHE": str(tmp_path / "cache"), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
                       "excludes": ["runs", ".git", "*.egg-info", ".whl", ".carry", ".venv*"]}
        job = subprocess.run(
            [RAY, "job", "submit", "--address", dashboard, "--working-dir", str(ROOT),
             "--runtime-env-json", json.dumps(runtime_env), "--",
             "python", "-m", "rlhf.recipes.dapo", "run.steps=2", "warmstart.steps=5", "data.num_eval=16",
             "rollout.prompts_per_step=4", "rollout.gen_prompts=4", "rollout.n=4", "run.progress=false",
             f"run.output_dir={out_dir}", "run.name=job"],
            env=ENV, capture_output=True, text=True, timeout=800)
        log = job.stdout + job.stderr
        assert job.returncode == 0 and "succeeded" in log, log[-3000:]
        summary = json.loads((out_dir / "job" / "summary.json").read_text())
        assert summary["steps"] == 2
        # Every node Ray registered is on loopback.
        nodes = subprocess.run([RAY, "list", "nodes", "--address", gcs, "--format", "json"],
                               env=ENV, capture_output=True, text=True)
        assert nodes.returncode == 0, nodes.stderr
        assert all(n["node_ip"] == "127.0.0.1" for n in json.loads(nodes.stdout))
