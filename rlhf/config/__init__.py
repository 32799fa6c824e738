"""Typed config trees: a shared base (`base`: model, data, trainer, run, ray) and one tree per
kind of recipe (`rl`: GRPO/DAPO; `ppo`: PPO; `supervised`: SFT, RM, DPO/SimPO, ORPO, KTO). Dataclasses are the
schema; YAML files and dotlist overrides are merged with OmegaConf (`loading`).

Every field carries a `help` string; a recipe's `--help` prints only the keys its tree has.
Validation is loud and happens once, at load time, before any actor starts.
"""

from rlhf.config.base import (BaseConfig, ConfigError, DataConfig, ModelConfig, RayConfig, RunConfig, TinyModelConfig,
                              TrainerConfig, WarmStartConfig)
from rlhf.config.loading import (RECIPE_TREES, format_help, load_config, parse_cli, recipe_defaults, schema_keys,
                                 to_dict)
from rlhf.config.ppo import PPOConfig
from rlhf.config.rl import GeneratorConfig, NeededRoles, RewardConfig, RLConfig
from rlhf.config.supervised import DPOConfig, KTOConfig, ORPOConfig, RMConfig, SFTConfig, SupervisedConfig

__all__ = [
    "BaseConfig", "ConfigError", "DPOConfig", "DataConfig", "GeneratorConfig", "KTOConfig", "ModelConfig",
    "NeededRoles", "ORPOConfig", "PPOConfig", "RECIPE_TREES", "RLConfig", "RMConfig", "RayConfig", "RewardConfig",
    "RunConfig", "SFTConfig", "SupervisedConfig", "TinyModelConfig", "TrainerConfig", "WarmStartConfig",
    "format_help", "load_config", "parse_cli", "recipe_defaults", "schema_keys", "to_dict",
]
