"""CPU: how well a model copies on the built-in tool task, with the decision to call taken for it.
For held-out problems, the episode's ids (exactly as a warm start trains on them and an episode
assembles them, `rlhf.data.sequences.encode_turns`) are cut before each of the model's turns (after
the call's opening tag, so the decision to call is not the model's), and greedy decoding must
reproduce the rest of the turn: the call (the operands copied from the prompt) and
the answer (the tool's reply copied into \\boxed{}).

    python benchmarks/calculator_copying.py MODEL_DIR [--problems 40]

MODEL_DIR: e.g. a cached warm start, `$RLHF_CACHE/warmstart/<key>`. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json

import torch
from transformers import AutoModelForCausalLM

from rlhf.data.sequences import encode_turns
from rlhf.envs.calculator_task import multiplication_rows, tool_transcript
from rlhf.models import load_tokenizer


def turn_spans(mask: list[int]) -> list[tuple[int, int]]:
    """(start, end) of each run of trained (assistant) tokens."""
    spans, start = [], None
    for i, m in enumerate(mask + [0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            spans.append((start, i))
            start = None
    return spans


@torch.no_grad()
def copies(model, tokenizer, row: dict) -> tuple[bool, bool]:
    """Whether greedy decoding reproduces the call turn and the answer turn of `row`."""
    call = row["prompt"].removeprefix("What is ").removesuffix("?").replace(" ", "")
    ids, mask = encode_turns([{"role": "user", "content": row["prompt"]}],
                             tool_transcript(call, row["answer"], row["answer"]), tokenizer)
    opened = len(tokenizer("<calc>", add_special_tokens=False)["input_ids"])  # the call's tag: the decision
    right = []
    for i, (start, end) in enumerate(turn_spans(mask)):
        start += opened if i == 0 else 0
        out = model.generate(torch.tensor([ids[:start]]), max_new_tokens=end - start, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
        right.append(out[0, start:].tolist() == ids[start:end])
    return right[0], right[1]


def main(a) -> dict:
    tokenizer = load_tokenizer(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model).eval()
    results = [copies(model, tokenizer, r) for r in multiplication_rows("eval")[:a.problems]]
    return {"model": a.model, "problems": len(results), "call_copied": sum(c for c, _ in results),
            "answer_copied": sum(r for _, r in results)}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--problems", type=int, default=40)
    print(json.dumps(main(p.parse_args())), flush=True)
