"""The inputs of an RL run, checked before any actor starts: model, prompts, reward functions."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.data.files import DataError
from rlhf.data.prompts import PromptSet, build_prompt_set, load_rows
from rlhf.startup.model import base_model


@dataclass
class RLInputs:
    base_path: str  # the model before the warm start
    tokenizer: object
    train: PromptSet
    evalset: PromptSet


def rl_inputs(cfg) -> RLInputs:
    from rlhf.reward import load_reward
    from rlhf.reward.runner import RESERVED

    base, tokenizer = base_model(cfg)
    sets = []
    for split in ("train", "eval"):
        rows, source = load_rows(cfg.data, split)
        if split == "eval":
            rows = rows[:cfg.data.num_eval]
        sets.append(build_prompt_set(rows, tokenizer, cfg.data, source))
    for spec in list(cfg.reward.fns) + list(cfg.reward.eval_fns):
        fn = load_reward(spec)
        missing = [c for c in fn.required_columns if c not in sets[0].columns and c not in RESERVED]
        if missing:
            raise DataError(f"reward {spec!r} needs dataset column(s) {missing}; the data has "
                            f"{sorted(sets[0].columns)}")
    return RLInputs(base, tokenizer, sets[0], sets[1])
