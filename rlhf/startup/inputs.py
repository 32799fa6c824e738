"""The inputs of an RL run, checked before any actor starts: model, prompts (rendered as the
environment starts its episodes, with its tools' schemas), reward functions (imported in a
child process first), and every row against the columns the rewards read."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from rlhf.data.files import DataError
from rlhf.data.prompts import PromptSet, build_prompt_set, load_rows
from rlhf.envs import env_task, load_environment, tool_schemas
from rlhf.startup.model import base_model

log = logging.getLogger(__name__)


@dataclass
class RLInputs:
    base_path: str  # the model before the warm start
    tokenizer: object
    train: PromptSet
    evalset: PromptSet
    skipped_rows: dict = field(default_factory=dict)  # split -> rows dropped for a missing reward column


def rl_inputs(cfg) -> RLInputs:
    from rlhf.reward import load_reward
    from rlhf.reward.loading import probe_reward

    base, tokenizer = base_model(cfg)
    fns = {}
    for spec in dict.fromkeys(list(cfg.reward.fns) + list(cfg.reward.eval_fns)):
        probe_reward(spec)
        fns[spec] = load_reward(spec)
    out = RLInputs(base, tokenizer, None, None)
    env_cls = load_environment(cfg.rollout.env)
    tools = tool_schemas(env_cls.tools) or None
    if tools and _template_drops_tools(tokenizer, tools):
        log.warning("rollout.env=%s offers tools, but the chat template of %s does not render them: the model "
                    "sees no schemas unless the environment's start() describes the tools", cfg.rollout.env, base)
    for split in ("train", "eval"):
        rows, source = load_rows(cfg.data, split, env_task(cfg))
        if split == "eval":
            rows = rows[:cfg.data.num_eval]
        prompts = build_prompt_set(rows, tokenizer, cfg.data, source, env_cls().start, tools)
        keep = complete_rows(prompts, fns, source, cfg.data.skip_incomplete_rows)
        if len(keep) < len(prompts):
            out.skipped_rows[split] = len(prompts) - len(keep)
            log.warning("%s: %d of %d rows lack a column a reward needs and are skipped (data.skip_incomplete_rows)",
                        source, len(prompts) - len(keep), len(prompts))
            if not keep:
                raise DataError(f"{source}: every row lacks a column a reward needs")
            prompts = prompts.select(keep)
        setattr(out, "train" if split == "train" else "evalset", prompts)
    return out


def complete_rows(prompts: PromptSet, fns: dict, source: str, skip: bool) -> list[int]:
    """Indices of the rows that hold every column each reward reads (`answer` is
    `data.answer_key`'s column); an incomplete row is an error naming the file, row and column
    unless `skip`."""
    from rlhf.reward.runner import RESERVED

    keep = []
    for i in range(len(prompts)):
        row = {k: v[i] for k, v in prompts.columns.items()} | {k: 0 for k in RESERVED}
        missing = [(spec, c) for spec, fn in fns.items() for c in fn.missing_columns(row)]
        if not missing:
            keep.append(i)
        elif not skip:
            spec, column = missing[0]
            raise DataError(f"{source}: row {i + 1} has no column {column!r}, which reward {spec!r} reads "
                            f"(the data has {sorted(prompts.columns)}; name the gold column with data.answer_key, "
                            "or skip such rows with data.skip_incomplete_rows=true)")
    return keep


def _template_drops_tools(tokenizer, tools: list) -> bool:
    messages = [{"role": "user", "content": "x"}]
    return tokenizer.apply_chat_template(messages, tokenize=False, tools=tools) == \
        tokenizer.apply_chat_template(messages, tokenize=False)
