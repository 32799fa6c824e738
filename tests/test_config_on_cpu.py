import pytest

from rlhf.config import ConfigError, RLConfig, format_help, load_config
from rlhf.recipes.dapo import dapo_defaults
from rlhf.recipes.grpo import grpo_defaults


def load(*args):
    return load_config(RLConfig, dapo_defaults(), list(args))


def test_dapo_defaults_follow_the_paper():
    cfg = load()
    a = cfg.algorithm
    assert (a.eps_low, a.eps_high, a.loss_agg, a.kl_coef) == (0.2, 0.28, "token-mean", 0.0)
    assert a.dynamic_sampling.enabled and a.overlong.shaping


def test_grpo_defaults_follow_the_paper():
    a = load_config(RLConfig, grpo_defaults(), []).algorithm
    assert (a.eps_low, a.eps_high, a.loss_agg, a.kl_coef, a.kl_estimator) == (0.2, 0.2, "seq-mean-token-mean", 0.04, "k3")
    assert not a.dynamic_sampling.enabled


def test_dotlist_overrides_are_typed():
    cfg = load("trainer.lr=1e-5", "rollout.n=4", "reward.fns=[math_verify,format]", "model.path=/tmp/x")
    assert cfg.trainer.lr == 1e-5 and isinstance(cfg.trainer.lr, float)
    assert cfg.rollout.n == 4 and cfg.reward.fns == ["math_verify", "format"]
    assert cfg.model.path == "/tmp/x"


def test_yaml_then_dotlist(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("trainer:\n  lr: 0.5\nrollout:\n  n: 4\n")
    cfg = load("--config", str(f), "rollout.n=6")
    assert cfg.trainer.lr == 0.5 and cfg.rollout.n == 6


def test_unknown_key_names_it_and_nearest():
    with pytest.raises(ConfigError, match=r"unknown config key 'trainer\.lrr'.*trainer\.lr"):
        load("trainer.lrr=1")


def test_unknown_key_in_yaml_names_the_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("rollout:\n  temprature: 0.7\n")
    with pytest.raises(ConfigError, match=r"rollout\.temprature.*bad\.yaml.*rollout\.temperature"):
        load("--config", str(f))


def test_wrong_type_names_key_and_type():
    with pytest.raises(ConfigError, match=r"rollout\.n.*int"):
        load("rollout.n=many")


def test_cross_field_errors_say_what_to_change():
    with pytest.raises(ConfigError, match="trainer.micro_batch_size"):
        load("rollout.prompts_per_step=3", "rollout.n=5", "trainer.num_workers=2")
    with pytest.raises(ConfigError, match="algorithm.loss_agg"):
        load("algorithm.loss_agg=token-sum")
    with pytest.raises(ConfigError, match="algorithm.adv_estimator"):
        load("algorithm.adv_estimator=nope")
    with pytest.raises(ConfigError, match="max_gen_batches.*cannot fill"):
        load("rollout.gen_prompts=4", "algorithm.dynamic_sampling.max_gen_batches=2", "rollout.prompts_per_step=16")
    with pytest.raises(ConfigError, match="reward.weights"):
        load("reward.fns=[math_verify]", "reward.weights=[1.0,2.0]")


def test_help_lists_every_key_with_default_and_meaning():
    text = format_help(RLConfig, dapo_defaults(), "rlhf.recipes.dapo")
    assert "algorithm.eps_high = 0.28" in text
    assert "rollout.n" in text and "samples per prompt" in text
    assert "algorithm.dynamic_sampling.max_gen_batches" in text
