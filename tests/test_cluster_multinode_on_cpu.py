"""Roles spread over two Ray nodes (a head and a second node on this machine, both on
loopback): placement uses Ray resources only, so a run that does not fit on one node uses both."""

import json
import subprocess
import sys

import pytest
from local_cluster import ENV, local_cluster


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_roles_are_placed_across_two_nodes(tmp_path):
    import ray

    ray.shutdown()  # this test starts (and stops) its own cluster
    # trainer 1 + generator 1 + reference 1 + reward 0.5 CPUs do not fit on one 2-CPU node
    with local_cluster([2, 2]) as (gcs, _):
        run = subprocess.run(
            [sys.executable, "-m", "rlhf.recipes.grpo", f"ray.address={gcs}", "run.steps=2", "warmstart.steps=5",
             "data.num_eval=8", "rollout.prompts_per_step=2", "rollout.n=4", "rollout.max_new_tokens=8",
             "run.progress=false", f"run.output_dir={tmp_path}", "run.name=two", "run.save_policy=false"],
            env=dict(ENV, RLHF_CACHE=str(tmp_path / "cache")), capture_output=True, text=True, timeout=500)
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    records = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    placement = next(r for r in records if r.get("event") == "placement")
    nodes = {role: set(ids) for role, ids in placement.items() if role != "event"}
    assert set(nodes) == {"trainer", "generator", "reward", "reference"}
    assert len(set().union(*nodes.values())) == 2, nodes
    assert [r["step"] for r in records if "reward/mean" in r] == [1, 2]
