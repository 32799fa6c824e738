"""Loading a recipe's config: its tree (a dataclass schema), the recipe's defaults, then
`--config file.yaml` layers, then dotlist overrides (`trainer.lr=1e-5 rollout.n=8`), merged
with OmegaConf and validated once.

A key the recipe does not read is an error that says which recipes do read it and which keys
this one reads; a key that moved names its new place; a wrong type names the key and the type.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import typing
from typing import Any, Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rlhf.config.base import ConfigError
from rlhf.config.ppo import PPOConfig
from rlhf.config.rl import RLConfig
from rlhf.config.supervised import DPOConfig, KTOConfig, ORPOConfig, RMConfig, SFTConfig

RECIPE_TREES = {"sft": SFTConfig, "rm": RMConfig, "dpo": DPOConfig, "orpo": ORPOConfig, "kto": KTOConfig,
                "grpo": RLConfig, "dapo": RLConfig, "ppo": PPOConfig}


def schema_keys(cls: type, prefix: str = "") -> dict[str, dataclasses.Field]:
    """Flattened `a.b.c` -> field for every leaf of a config dataclass tree."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(schema_keys(hints[f.name], key + "."))
        else:
            out[key] = f
    return out


def _unknown_key(cls: type, key: str, source: str) -> ConfigError:
    valid = schema_keys(cls)
    moved = getattr(cls, "MOVED", {}).get(key)
    if moved and (moved in valid or " " in moved):  # a new key of this tree, or a sentence
        return ConfigError(f"config key '{key}' ({source}) has moved: use {moved}")
    readers = [name for name, tree in RECIPE_TREES.items() if key in schema_keys(tree)]
    if readers:
        section = key.split(".")[0]
        mine = [k for k in valid if k.split(".")[0] == section]
        reads = f"its {section} keys are {', '.join(mine)}" if mine else \
            f"it reads the sections {', '.join(f.name for f in dataclasses.fields(cls))}"
        return ConfigError(f"config key '{key}' ({source}) is not read by this recipe (it is a key of "
                           f"{', '.join(readers)}); {reads} (--help lists them all)")
    groups = sorted({k.rsplit(".", 1)[0] for k in valid if "." in k})
    near = difflib.get_close_matches(key, list(valid) + groups, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(near)}?" if near else "; run with --help for the valid keys"
    return ConfigError(f"unknown config key '{key}' ({source}){hint}")


def _check_keys(cls: type, keys: list[str], source: str) -> None:
    valid = schema_keys(cls)
    groups = {k.rsplit(".", 1)[0] for k in valid if "." in k}
    for key in keys:
        if key not in valid and key not in groups:
            raise _unknown_key(cls, key, source)


def _flat_keys(d: Any, prefix: str = "") -> list[str]:
    if not isinstance(d, dict):
        return [prefix[:-1]]
    keys = []
    for k, v in d.items():
        keys += _flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]
    return keys


def _yaml_layer(cls: type, path: str):
    try:
        loaded = OmegaConf.load(path)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except Exception as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    container = OmegaConf.to_container(loaded)
    if not isinstance(container, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of sections (model:, trainer:, ...), "
                          f"not a {type(container).__name__}")
    _check_keys(cls, _flat_keys(container), path)
    return loaded


def recipe_defaults(cls: type, overrides: list[str]) -> Any:
    """An instance of tree `cls` with a recipe's defaults, written as the overrides a user would
    type (`"trainer.lr=5e-5"`); not validated yet (`load_config` validates the final config)."""
    _check_keys(cls, [o.split("=", 1)[0] for o in overrides], f"{cls.__name__} defaults")
    merged = OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.from_dotlist(list(overrides)))
    return OmegaConf.to_object(merged)


def load_config(cls: type, defaults: Any, args: list[str]) -> Any:
    """Schema `cls`, recipe `defaults` (an instance), then `--config file.yaml`, then dotlist `args`."""
    base = OmegaConf.structured(defaults)
    layers = []
    rest = list(args)
    while "--config" in rest:
        i = rest.index("--config")
        if i + 1 >= len(rest):
            raise ConfigError("--config needs a YAML file path")
        path = rest.pop(i + 1)
        rest.pop(i)
        layers.append(_yaml_layer(cls, path))
    for a in rest:
        if "=" not in a or a.startswith("-"):
            raise ConfigError(f"cannot parse argument '{a}': expected key=value (e.g. trainer.lr=1e-5) or "
                              "--config FILE")
    _check_keys(cls, [a.split("=", 1)[0].lstrip("+") for a in rest], "command line")
    try:
        layers.append(OmegaConf.from_dotlist(rest))
        merged = OmegaConf.merge(base, *layers)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise ConfigError(_explain(cls, e)) from None
    return cfg.validate()


def _explain(cls: type, e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None) or "?"
    f = schema_keys(cls).get(key)
    expected = str(f.type).replace("Optional[", "").rstrip("]") if f else "?"
    msg = str(e).split("\n")[0]
    return f"config key '{key}': {msg} (expected {expected})"


def format_help(cls: type, defaults: Any, prog: str) -> str:
    lines = [f"usage: python -m {prog} [--config FILE.yaml] [key=value ...]", "", "Config keys (default  meaning):"]
    flat = OmegaConf.to_container(OmegaConf.structured(defaults))
    for key, f in schema_keys(cls).items():
        value = flat
        for part in key.split("."):
            value = value[part]
        lines.append(f"  {key} = {value!r:<14}  {f.metadata.get('help', '')}")
    return "\n".join(lines)


def parse_cli(cls: type, defaults: Any, prog: str, argv: Optional[list[str]] = None) -> Any:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print(format_help(cls, defaults, prog))
        raise SystemExit(0)
    try:
        return load_config(cls, defaults, argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)


def to_dict(cfg: Any) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg))
