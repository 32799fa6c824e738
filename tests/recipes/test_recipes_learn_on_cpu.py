"""Each recipe learns, end to end through Ray on CPU (tiny model, fixed seeds, margins left):
SFT lowers held-out loss and raises accuracy, the reward model separates held-out pairs, DPO
raises preference accuracy and margin, PPO raises held-out accuracy, and a trained reward model
serves PPO as reward and critic initialisation."""

import json
from pathlib import Path

import pytest
from rlhf.recipes import dpo, kto, orpo, ppo, rm, sft

COMMON = ["run.progress=false"]


pytestmark = [pytest.mark.learning, pytest.mark.usefixtures("ray_local")]


def _summary(run_dir: str) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sft_lowers_eval_loss_and_raises_accuracy(tmp_path):
    s = sft.main(COMMON + ["run.steps=200", "run.eval_every=200", "data.num_eval=100",
                           f"run.output_dir={tmp_path}", "run.name=sft"])
    assert s == _summary(s["run_dir"]) | {"wall_s": s["wall_s"]}
    assert s["eval_loss_after"] < 0.5 * s["eval_loss_before"]
    assert s["accuracy_after"] >= s["accuracy_before"] + 0.2
    assert (Path(s["policy_path"]) / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory, ray_local):
    out = tmp_path_factory.mktemp("rm")
    return rm.main(COMMON + ["warmstart.steps=100", "run.steps=60", "run.eval_every=60", "data.num_eval=200",
                             f"run.output_dir={out}", "run.name=rm"])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_reward_model_separates_held_out_pairs(reward_model):
    assert reward_model["pair_accuracy_before"] < 0.7
    assert reward_model["pair_accuracy_after"] >= 0.9
    assert reward_model["margin_after"] > reward_model["margin_before"] + 1


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dpo_raises_preference_accuracy_and_margin(tmp_path):
    s = dpo.main(COMMON + ["warmstart.steps=100", "run.steps=60", "run.eval_every=60", "data.num_eval=200",
                           f"run.output_dir={tmp_path}", "run.name=dpo"])
    assert s["pair_accuracy_after"] >= s["pair_accuracy_before"] + 0.05
    assert s["margin_before"] == 0 and s["margin_after"] > 0.2  # the policy starts as the reference
    assert s["reward_accuracy_after"] > 0.8


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ppo_raises_held_out_accuracy(tmp_path):
    s = ppo.main(COMMON + ["data.num_eval=100", "run.steps=6", "run.eval_every=0", f"run.output_dir={tmp_path}",
                           "run.name=ppo",
                           "run.save_policy=false"])
    assert s["accuracy_after"] >= s["accuracy_before"] + 0.1
    steps = [json.loads(line) for line in (tmp_path / "ppo" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in steps if "reward/mean" in r][-1]
    for key in ("critic/vf_loss", "critic/vf_clipfrac", "ppo/kl_per_seq", "ppo/kl_coef", "timing/critic_s"):
        assert key in last, key


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_trained_reward_model_serves_ppo(tmp_path, reward_model):
    path = reward_model["reward_model_path"]
    ppo.main(COMMON + ["data.num_eval=100", "warmstart.steps=100", "run.steps=2", "run.eval_every=0",
                       f"run.output_dir={tmp_path}",
                       "run.name=rmppo", "run.save_policy=false", f"reward.model={path}", f"critic.init={path}",
                       "algorithm.kl_controller=adaptive"])
    steps = [json.loads(line) for line in (tmp_path / "rmppo" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if "reward/mean" in r]
    assert all("reward/model/mean" in r for r in steps)
    # the critic starts from the reward model's head, not from zero: its first values are not ~0
    assert abs(steps[0]["ppo/value_mean"]) > 0.05
    assert steps[1]["ppo/kl_coef"] != steps[0]["ppo/kl_coef"]  # the adaptive controller moved


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_orpo_raises_preference_accuracy_without_losing_the_task(tmp_path):
    """From the warm-started policy (the same cached warm start as PPO's), no reference model."""
    s = orpo.main(COMMON + ["run.steps=40", "run.eval_every=40", "data.num_eval=100", f"run.output_dir={tmp_path}",
                            "run.name=orpo"])
    assert s["pair_accuracy_after"] >= s["pair_accuracy_before"] + 0.1
    assert s["margin_after"] > s["margin_before"]  # the mean log odds ratio of chosen over rejected
    assert s["accuracy_after"] >= s["accuracy_before"] - 0.05


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kto_separates_desirable_from_undesirable_without_losing_the_task(tmp_path):
    s = kto.main(COMMON + ["run.steps=40", "run.eval_every=40", "data.num_eval=100", f"run.output_dir={tmp_path}",
                           "run.name=kto"])
    assert s["margin_before"] == 0  # the policy starts as the reference
    assert s["margin_after"] > 0.05 and s["reward_desirable_after"] > s["reward_undesirable_after"]
    assert s["accuracy_after"] >= s["accuracy_before"] - 0.05
