"""Run logging: pass@k, the end-of-run summary, metric history restored on resume, wandb offline."""

import itertools
import json
import time
from math import isclose

import pytest

from rlhf.metrics import pass_at_k
from rlhf.tracking import Tracker, run_summary


@pytest.mark.parametrize("n,c,k,want", [(4, 1, 1, 0.25), (4, 1, 2, 0.5), (5, 2, 3, 0.9), (8, 0, 4, 0.0),
                                        (4, 3, 2, 1.0)])
def test_pass_at_k_hand_values(n, c, k, want):
    assert isclose(pass_at_k(n, c, k), want)


def test_pass_at_k_is_the_chance_that_k_of_n_samples_hold_a_pass():
    for n in range(1, 7):
        for c in range(n + 1):
            samples = [1] * c + [0] * (n - c)
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(samples, k))
                assert isclose(pass_at_k(n, c, k), sum(any(s) for s in subsets) / len(subsets))
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_run_summary_from_history():
    history = [{"event": "placement"}, {"eval/accuracy": 0.25, "step": 0},
               {"reward/mean": 0.1, "timing/generate_s": 3.0, "timing/update_s": 1.0, "timing/step_s": 5.0,
                "throughput/response_tokens_per_s": 100.0, "step": 1},
               {"event": "actor_restarted", "role": "generator"},
               {"reward/mean": 0.3, "timing/generate_s": 1.0, "timing/update_s": 1.0, "timing/step_s": 3.0,
                "throughput/response_tokens_per_s": 200.0, "step": 2},
               {"eval/accuracy": 0.75, "eval/pass@4": 0.9, "step": 2}]
    s = run_summary(history)
    assert (s["accuracy_before"], s["accuracy_after"], s["accuracy_best"]) == (0.25, 0.75, 0.75)
    assert (s["reward_first"], s["reward_last"], s["step_seconds_mean"]) == (0.1, 0.3, 4.0)
    assert s["phase_seconds_mean"] == {"generate": 2.0, "update": 1.0}
    assert s["phase_share"] == {"generate": 0.5, "update": 0.25}
    assert s["response_tokens_per_s_mean"] == 150.0 and s["actor_restarts"] == 1
    assert s["eval_final"]["eval/pass@4"] == 0.9


def test_history_given_on_resume_replaces_later_records(tmp_path):
    t = Tracker(tmp_path, {})
    for step in (1, 2, 3):
        t.log({"reward/mean": float(step), "step": step})
    t.close()
    kept = t.history[:2]  # a checkpoint taken after step 2
    t = Tracker(tmp_path, {}, history=kept)
    t.log({"reward/mean": 9.0, "step": 3})
    t.close()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["reward/mean"]) for r in lines] == [(1, 1.0), (2, 2.0), (3, 9.0)]


def test_wandb_runs_offline_into_the_run_directory(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    t = Tracker(tmp_path, {"trainer": {"lr": 0.123}}, wandb_project="rlhf-test")
    t.log({"event": "placement", "trainer": ["node"]})
    for step in (1, 2):
        t.log({"reward/mean": 0.5 * step, "step": step})
    run_id = t.wandb_id
    t.close()
    (run_dir,) = (tmp_path / "wandb").glob(f"offline-run-*-{run_id}")
    expected = (b"rlhf-test", b"0.123", b"reward/mean")
    for _ in range(60):  # wandb's writer process may still be flushing when finish() returns
        records = (run_dir / f"run-{run_id}.wandb").read_bytes()  # what `wandb sync` uploads later
        if all(e in records for e in expected):
            break
        time.sleep(0.5)
    assert all(e in records for e in expected), records[:200]


def test_combined_shards_keep_a_loss_that_the_first_rank_did_not_report():
    """A rank with only empty micro-batches reports no loss: the other ranks' losses still add
    up, and shared metrics average over the ranks that report them."""
    from rlhf.metrics import combine_shards

    shards = [{"actor/grad_norm": 1.0}, {"actor/grad_norm": 1.0, "actor/pg_loss": 0.25, "actor/clipfrac": 0.5},
              {"actor/grad_norm": 1.0, "actor/pg_loss": 0.5, "actor/clipfrac": 0.1}]
    out = combine_shards(shards)
    assert out == {"actor/grad_norm": 1.0, "actor/pg_loss": 0.75, "actor/clipfrac": pytest.approx(0.3)}
    assert combine_shards([]) == {}
