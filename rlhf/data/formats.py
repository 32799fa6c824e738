"""Rows in public formats -> the canonical examples the recipes train on.

Column names come from the config (`data.prompt_key`, `data.response_key`, `data.messages_key`,
`data.chosen_key`, `data.rejected_key`), so GSM8K (`question`/`answer`), MATH
(`problem`/`solution`), chat `messages` lists and Anthropic HH (`chosen`/`rejected`
transcripts) all load without conversion scripts. Every error names the source and row.
"""

from __future__ import annotations

import re

from rlhf.data.files import DataError

Messages = list[dict]
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")


def parse_hh(transcript: str) -> Messages:
    """An Anthropic HH transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") as chat messages."""
    parts = _HH_TURN.split(transcript)
    if len(parts) < 3:
        raise ValueError("no 'Human:' / 'Assistant:' turns")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[who], "content": text.strip()} for who, text in zip(parts[1::2], parts[2::2])]


def _missing(source: str, i: int, row: dict, columns: list[str]) -> DataError:
    return DataError(f"{source}: row {i + 1} has no column {', '.join(repr(c) for c in columns)} "
                     f"(columns: {', '.join(row)}); map yours with data.*_key (see --help)")


def _split_last_assistant(messages, source: str, i: int) -> tuple[Messages, str]:
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise DataError(f"{source}: row {i + 1}: expected a list of {{role, content}} messages")
    if messages[-1].get("role") != "assistant":
        raise DataError(f"{source}: row {i + 1}: the last message must be the assistant's answer")
    return list(messages[:-1]), str(messages[-1]["content"])


def as_messages(prompt) -> Messages:
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]


def sft_example(row: dict, keys, source: str, i: int) -> tuple[Messages, str]:
    """(prompt messages, response): from a `messages` list (the last assistant turn is the
    response), or from prompt and response columns."""
    if keys.messages_key in row:
        return _split_last_assistant(row[keys.messages_key], source, i)
    missing = [k for k in (keys.prompt_key, keys.response_key) if k not in row]
    if missing:
        raise _missing(source, i, row, missing)
    return as_messages(row[keys.prompt_key]), str(row[keys.response_key])


def preference_example(row: dict, keys, source: str, i: int) -> tuple[Messages, str, str]:
    """(prompt messages, chosen, rejected): chosen/rejected as message lists, as strings with
    a prompt column, or as full HH transcripts (the shared turns are the prompt)."""
    missing = [k for k in (keys.chosen_key, keys.rejected_key) if k not in row]
    if missing:
        raise _missing(source, i, row, missing)
    chosen, rejected = row[keys.chosen_key], row[keys.rejected_key]
    if isinstance(chosen, list):
        prompt, c = _split_last_assistant(chosen, source, i)
        _, r = _split_last_assistant(rejected, source, i)
        return prompt, c, r
    if keys.prompt_key in row:
        return as_messages(row[keys.prompt_key]), str(chosen), str(rejected)
    try:
        prompt, c = _split_last_assistant(parse_hh(chosen), source, i)
        prompt_r, r = _split_last_assistant(parse_hh(rejected), source, i)
    except ValueError as e:
        raise DataError(f"{source}: row {i + 1}: no column {keys.prompt_key!r} and the {keys.chosen_key!r} text "
                        f"is not a Human/Assistant transcript ({e})") from None
    if prompt != prompt_r:
        raise DataError(f"{source}: row {i + 1}: chosen and rejected transcripts differ before the last answer")
    return prompt, c, r
