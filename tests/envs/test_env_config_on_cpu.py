"""`rollout.env` and its limits are checked when the config loads, with errors naming the key;
the default is the single-turn environment, whose episode budget is one turn."""

import pytest

from rlhf.config import ConfigError, RLConfig, load_config
from rlhf.recipes.dapo import dapo_defaults


def _load(*args):
    return load_config(RLConfig, dapo_defaults(), list(args))


def test_default_is_single_turn_with_a_one_turn_budget():
    cfg = _load()
    assert cfg.rollout.env == "single_turn" and cfg.rollout.max_turns == 1
    assert cfg.rollout.episode_tokens() == cfg.rollout.max_new_tokens
    assert _load("rollout.env=calculator", "rollout.max_turns=3").rollout.episode_tokens() == 3 * 40


@pytest.mark.parametrize("value,message", [
    ("nope", "rollout.env='nope' is not a registered environment; registered: calculator, single_turn, tools"),
    ("{path}:NotAnEnv", "not a subclass of rlhf.envs.Environment"),
    ("{path}:Missing", "rollout.env: environment '{path}:Missing': {path} has no class 'Missing'"),
    ("no_such_pkg.mod:X", "rollout.env: environment 'no_such_pkg.mod:X': cannot import module 'no_such_pkg.mod'"),
    ("{path}:Undocumented", "rollout.env={path}:Undocumented: tool 'f'"),
])
def test_a_bad_environment_is_an_error_naming_rollout_env(tmp_path, value, message):
    path = tmp_path / "envs.py"
    path.write_text("from rlhf.envs import Environment\n\nclass NotAnEnv:\n    pass\n\n"
                    "def f(x: int) -> int:\n    return x\n\nclass Undocumented(Environment):\n    tools = (f,)\n")
    with pytest.raises(ConfigError) as e:
        _load(f"rollout.env={value.format(path=path)}")
    assert message.format(path=path) in str(e.value)


@pytest.mark.parametrize("args,message", [
    (["rollout.max_turns=0"], "rollout.max_turns=0 must be > 0"),
    (["rollout.max_episode_tokens=10"], "rollout.max_episode_tokens=10 must be >= rollout.max_new_tokens=40"),
    (["rollout.tool_timeout_s=0"], "rollout.tool_timeout_s=0"),
])
def test_episode_limits_are_checked(args, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        _load("rollout.env=calculator", *args)
