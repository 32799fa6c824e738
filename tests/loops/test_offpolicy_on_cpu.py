"""Off-policy rollouts through real actors: version accounting for max_staleness 0, 1 and 2,
the importance-sampling correction as applied by the trainer, and a generator killed while it
samples ahead."""

import json
import os
import signal

import pytest
import ray

from rlhf.algorithms import truncated_is_weights
from rlhf.batch import trim_padding
from rlhf.config import RLConfig, load_config
from rlhf.recipes.dapo import dapo_defaults
from rlhf.loops.rl_run import run_rl
from rlhf.loops.rl import RLLoop

# dynamic sampling off: every batch is exactly one generation request, so staleness is exact
ARGS = ["warmstart.steps=30", "data.num_eval=8", "rollout.prompts_per_step=4", "rollout.n=4",
        "rollout.max_new_tokens=12", "run.progress=false", "run.eval_every=0", "run.save_policy=false",
        "algorithm.dynamic_sampling.enabled=false", "run.steps=5"]


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RLHF_CACHE", str(tmp_path_factory.getbasetemp() / "offpolicy-cache"))
    yield
    ray.shutdown()


def _run(tmp_path, name, extra, loop_cls=RLLoop):
    cfg = load_config(RLConfig, dapo_defaults(), ARGS + extra + [f"run.output_dir={tmp_path}", f"run.name={name}"])
    run_rl(cfg, "dapo", loop_cls=loop_cls)
    return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]


def _steps(records):
    return [r for r in records if "reward/mean" in r]


class CheckedLoop(RLLoop):
    """Recomputes the importance weights from the batch the trainer receives."""

    expected: list = []

    def update(self, batch):
        old = ray.get(self.roles.trainers.actors[0].logprobs.remote(trim_padding(batch), 1.0))
        _, m = truncated_is_weights(old, batch["rollout_logprobs_BR"], batch["response_mask_BR"], cap=2.0)
        CheckedLoop.expected.append(m)
        return super().update(batch)


class KeysLoop(RLLoop):
    """Records the keys of every batch the trainer receives."""

    seen: list = []

    def update(self, batch):
        KeysLoop.seen.append(set(batch))
        return super().update(batch)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_staleness_accounting_and_correction(tmp_path):
    KeysLoop.seen = []
    sync = _steps(_run(tmp_path, "k0", [], KeysLoop))
    assert [s["offpolicy/staleness_max"] for s in sync] == [0] * 5
    assert not any(k.startswith("offpolicy/is_") for k in sync[0])  # no correction in the synchronous loop
    # ...so the engine was not asked for its log-probs
    assert len(KeysLoop.seen) == 5 and not any("rollout_logprobs_BR" in keys for keys in KeysLoop.seen)

    CheckedLoop.expected = []
    one = _steps(_run(tmp_path, "k1", ["rollout.max_staleness=1"], CheckedLoop))
    # the batch of step t+1 is drawn by the weights of step t-1 while step t trains
    assert [(s["offpolicy/staleness_mean"], s["offpolicy/staleness_max"]) for s in one] == [(0, 0)] + [(1, 1)] * 4
    assert all(s["batch/sequences"] == 16 and s["offpolicy/stale_groups_dropped"] == 0 for s in one)
    for s, want in zip(one, CheckedLoop.expected):
        for key in ("is_mean", "is_capped_frac", "logprob_abs_diff_mean"):
            assert s[f"offpolicy/{key}"] == pytest.approx(want[key], abs=1e-6), key
    assert one[0]["offpolicy/logprob_abs_diff_mean"] < 1e-5  # on-policy: the engine is the trainer's model
    assert all(s["offpolicy/logprob_abs_diff_mean"] > 1e-4 for s in one[1:])  # one update apart

    two = _steps(_run(tmp_path, "k2", ["rollout.max_staleness=2"]))
    assert [s["offpolicy/staleness_max"] for s in two] == [0, 1, 2, 2, 2]
    assert all(s["offpolicy/staleness_mean"] == s["offpolicy/staleness_max"] for s in two)


class KillAhead(RLLoop):
    """Kills generator 0's process right after it was handed the next step's batch (step 2)."""

    def prefetch(self):
        super().prefetch()
        if self.step_idx == 1:
            actor = self.roles.generators.actors[0]
            os.kill(ray.get(actor.__ray_call__.remote(lambda _: os.getpid())), signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_generator_killed_while_sampling_ahead_loses_no_batch(tmp_path):
    records = _run(tmp_path, "kill", ["rollout.max_staleness=1"], KillAhead)
    steps = _steps(records)
    restarts = [r for r in records if r.get("event") == "actor_restarted"]
    assert [(r["role"], r["step"]) for r in restarts] == [("generator", 3)]
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5]
    assert all(s["batch/sequences"] == 16 and s["batch/loss_tokens"] > 0 for s in steps)
    assert max(s["offpolicy/staleness_max"] for s in steps) <= 1


def test_sleeping_colocated_generators_fall_back_to_the_synchronous_loop(caplog):
    from rlhf.data.prompts import PromptSet

    cfg = load_config(RLConfig, dapo_defaults(), ["rollout.max_staleness=2", "generator.sleep_while_training=true"])
    prompts = PromptSet([[1, 2]], ["p"], {"answer": ["3"]})
    loop = RLLoop(cfg, roles=None, tokenizer=None, train=prompts, evalset=prompts, transport=None)
    assert loop.staleness == 0 and loop._rollout_is() is None
    assert "running synchronously" in caplog.text
    awake = load_config(RLConfig, dapo_defaults(), ["rollout.max_staleness=2"])
    assert RLLoop(awake, None, None, prompts, prompts, None).staleness == 2
