import pytest

from rlhf.config import ConfigError, RLConfig, format_help, load_config, schema_keys
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
    with pytest.raises(ConfigError, match="trainer.mini_batches=2"):
        load("rollout.prompts_per_step=3", "rollout.n=5", "trainer.mini_batches=2")
    with pytest.raises(ConfigError, match="trainer.micro_batch_size.*trainer.max_tokens_per_micro_batch"):
        load("trainer.micro_batch_size=8")  # RL micro-batches are sized by tokens
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


# ---- one tree per kind of recipe -------------------------------------------------------------

def test_sft_help_lists_only_keys_sft_reads(capsys):
    from rlhf.recipes import sft

    with pytest.raises(SystemExit) as e:
        sft.main(["--help"])
    assert e.value.code == 0
    keys = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    sections = {k.split(".")[0] for k in keys}
    assert sections == {"model", "data", "trainer", "run", "ray", "eval"}
    assert {"trainer.lr", "trainer.batch_size", "run.steps", "data.response_key", "eval.fns"} <= keys
    assert not keys & {"trainer.mini_batches", "run.checkpoint_every", "data.chosen_key"}
    assert len(keys) < 0.6 * len(schema_keys(RLConfig))


def test_one_key_per_learning_rate_and_step_count():
    from rlhf.config import DPOConfig, PPOConfig, SFTConfig
    from rlhf.recipes.dpo import dpo_defaults
    from rlhf.recipes.ppo import ppo_defaults
    from rlhf.recipes.sft import sft_defaults

    for cls, defaults in ((SFTConfig, sft_defaults()), (DPOConfig, dpo_defaults()), (RLConfig, dapo_defaults()),
                          (PPOConfig, ppo_defaults())):
        keys = schema_keys(cls)
        assert [k for k in keys if k.endswith(".steps") and not k.startswith("warmstart.")] == ["run.steps"]
        assert [k for k in keys if k.endswith(".lr") and k.split(".")[0] not in ("warmstart", "critic")] == \
            ["trainer.lr"]
        assert [k for k in keys if "micro_batch" in k] == (["trainer.max_tokens_per_micro_batch"] + (
            ["trainer.micro_batch_size"] if cls in (SFTConfig, DPOConfig) else []))
    cfg = load_config(SFTConfig, sft_defaults(), ["trainer.lr=0.5", "run.steps=7"])
    assert (cfg.trainer.lr, cfg.run.steps) == (0.5, 7)


def test_a_key_the_recipe_does_not_read_names_the_keys_it_does():
    from rlhf.config import SFTConfig
    from rlhf.recipes.sft import sft_defaults

    with pytest.raises(ConfigError, match=r"rollout\.n.*not read by this recipe.*grpo, dapo, ppo.*model, data"):
        load_config(SFTConfig, sft_defaults(), ["rollout.n=4"])
    with pytest.raises(ConfigError, match=r"trainer\.mini_batches.*its trainer keys are .*trainer\.batch_size"):
        load_config(SFTConfig, sft_defaults(), ["trainer.mini_batches=2"])
    with pytest.raises(ConfigError, match=r"critic\.lr.*a key of ppo"):
        load("critic.lr=1e-4")


def test_moved_keys_name_their_new_place(tmp_path):
    from rlhf.config import SFTConfig
    from rlhf.recipes.sft import sft_defaults

    with pytest.raises(ConfigError, match=r"'train\.lr'.*moved: use trainer\.lr"):
        load_config(SFTConfig, sft_defaults(), ["train.lr=1"])
    f = tmp_path / "old.yaml"
    f.write_text("train:\n  steps: 5\n")
    with pytest.raises(ConfigError, match=r"'train\.steps' \(.*old\.yaml\) has moved: use run\.steps"):
        load_config(SFTConfig, sft_defaults(), ["--config", str(f)])
    with pytest.raises(ConfigError, match=r"warmstart\.cache_dir.*model\.cache_dir"):
        load("warmstart.cache_dir=/tmp/x")


def test_supervised_batch_must_split_over_the_workers():
    from rlhf.config import SFTConfig
    from rlhf.recipes.sft import sft_defaults

    with pytest.raises(ConfigError, match=r"trainer\.batch_size.*64 rows.*trainer\.num_workers=3"):
        load_config(SFTConfig, sft_defaults(), ["trainer.num_workers=3"])
    assert load_config(SFTConfig, sft_defaults(), ["trainer.num_workers=2"]).trainer.num_workers == 2


def test_estimator_and_recipe_must_agree_on_the_critic():
    from rlhf.config import PPOConfig
    from rlhf.recipes.ppo import ppo_defaults

    with pytest.raises(ConfigError, match=r"adv_estimator=gae needs a critic.*rlhf\.recipes\.ppo"):
        load("algorithm.adv_estimator=gae")
    with pytest.raises(ConfigError, match=r"adv_estimator=grpo does not use the critic.*adv_estimator=gae"):
        load_config(PPOConfig, ppo_defaults(), ["algorithm.adv_estimator=grpo"])
    with pytest.raises(ConfigError, match=r"kl_coef"):
        load_config(PPOConfig, ppo_defaults(), ["algorithm.kl_coef=0"])


def test_roles_are_decided_in_one_place():
    from rlhf.config import PPOConfig
    from rlhf.placement import plan_from_config
    from rlhf.recipes.ppo import ppo_defaults

    dapo_roles = load().roles()
    assert (dapo_roles.reference, dapo_roles.critic, dapo_roles.reward_model) == (False, False, False)
    grpo = load_config(RLConfig, grpo_defaults(), ["placement.mode=colocate"])
    assert grpo.roles().reference and not grpo.roles().critic
    ppo = load_config(PPOConfig, ppo_defaults(), ["reward.model=/tmp/rm", "placement.mode=split"])
    need = ppo.roles()
    assert need.reference and need.critic and need.reward_model
    plan = plan_from_config(ppo, gpus=True)
    assert set(plan.slots) == {"trainer", "generator", "reference", "critic", "reward_model"}
    assert set(plan_from_config(grpo, gpus=True).slots) == {"trainer", "generator", "reference"}


def test_bad_values_are_errors_naming_the_key():
    for arg, key in (("trainer.lr=-1", "trainer.lr"), ("run.steps=0", "run.steps"),
                     ("trainer.max_tokens_per_micro_batch=-1", "trainer.max_tokens_per_micro_batch"),
                     ("trainer.num_workers=0", "trainer.num_workers"),
                     ("rollout.prompts_per_step=0", "rollout.prompts_per_step")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load(arg)
    with pytest.raises(ConfigError, match=r"rollout\.temperature=0.*rollout\.n=8"):
        load("rollout.temperature=0")


def test_yaml_whose_top_level_is_not_a_mapping(tmp_path):
    f = tmp_path / "list.yaml"
    f.write_text("- trainer.lr=1\n")
    with pytest.raises(ConfigError, match=r"list\.yaml.*top level must be a mapping"):
        load("--config", str(f))


def test_micro_batch_token_budget_follows_the_trainer_device():
    assert load().micro_batch_tokens() == 2048  # CPU
    assert load("placement.mode=colocate").micro_batch_tokens() == 8192  # placement gives it a GPU
    assert load("trainer.gpus_per_worker=1").micro_batch_tokens() == 8192
    assert load("placement.mode=split", "trainer.max_tokens_per_micro_batch=300").micro_batch_tokens() == 300
