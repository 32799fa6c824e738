"""Anthropic HH-RLHF rows -> the three files of the SFT -> RM -> PPO pipeline:

    sft-{split}.jsonl      {"messages": [...]}: the chosen transcript as a chat (the last answer is the target)
    pairs-{split}.jsonl    {"chosen", "rejected"}: the transcripts as they are (the RM recipe reads HH directly)
    prompts-{split}.jsonl  {"prompt": [...]}: the turns before the last answer, for PPO to answer

    python examples/sft-rm-ppo/prepare_hh.py HH_TRAIN.jsonl.gz HH_TEST.jsonl.gz OUT_DIR

Transcripts longer than MAX_CHARS (about 750 tokens at 4 characters a token) are left out, so that
every prompt fits ppo.yaml's data.max_prompt_len and every answer its generator.max_model_len."""

import json
import sys
from pathlib import Path

from rlhf.data.files import read_rows
from rlhf.data.formats import parse_hh

MAX_CHARS = 3000


def usable(row: dict) -> bool:
    """Short enough, and the chosen transcript ends with an answer of the assistant."""
    if max(len(row["chosen"]), len(row["rejected"])) > MAX_CHARS:
        return False
    try:
        chat = parse_hh(row["chosen"])
    except ValueError:
        return False
    return chat[-1]["role"] == "assistant" and len(chat) > 1


def convert(rows: list[dict], out: Path, split: str) -> int:
    kept = [r for r in rows if usable(r)]
    files = {name: open(out / f"{name}-{split}.jsonl", "w") for name in ("sft", "pairs", "prompts")}
    for r in kept:
        chat = parse_hh(r["chosen"])
        files["sft"].write(json.dumps({"messages": chat}) + "\n")
        files["pairs"].write(json.dumps({"chosen": r["chosen"], "rejected": r["rejected"]}) + "\n")
        files["prompts"].write(json.dumps({"prompt": chat[:-1]}) + "\n")
    for f in files.values():
        f.close()
    return len(kept)


if __name__ == "__main__":
    train, test, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    for split, path in (("train", train), ("test", test)):
        rows = read_rows(path)
        print(f"{split}: {convert(rows, out, split)} of {len(rows)} rows -> {out}")
