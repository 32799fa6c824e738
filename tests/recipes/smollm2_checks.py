"""What every recipe's SmolLM2 test checks, computed here without the project's own scoring code:
public-format rows, the chat template's prompt ids, the end-of-turn stop, changed weights, and
log-probs of a saved checkpoint read back with plain transformers."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file

from rlhf.batch import Completion, collate
from rlhf.data.files import read_rows

# GSM8K-format rows whose answer is one number: SmolLM2 ends these within a few tokens, so that
# sampling stopping at the end-of-turn token is seen even with a short max_new_tokens
SHORT_GSM8K = [{"question": f"What is {a} + {b}? Reply with the number only.", "answer": f"{a} + {b} = {a + b}\n"
                f"#### {a + b}"} for a, b in [(2, 3), (40, 2)]]
HH_ROWS = [{"chosen": f"\n\nHuman: What is {a} plus {b}?\n\nAssistant: {a} plus {b} is {a + b}.",
            "rejected": f"\n\nHuman: What is {a} plus {b}?\n\nAssistant: I don't know."} for a, b in
           [(2, 3), (10, 5), (7, 7), (1, 8)]]


def gsm8k_rows(shared: Path | None, n: int) -> list[dict]:
    """The first `n` GSM8K training rows (the sample data) and the short rows; the short rows alone
    where the sample data is absent."""
    real = read_rows(str(shared / "gsm8k" / "train.jsonl"))[:n] if shared else []
    return real + SHORT_GSM8K


def hh_rows(shared: Path | None, n: int) -> list[dict]:
    return read_rows(str(shared / "hh-rlhf" / "harmless-base-test.jsonl.gz"))[:n] if shared else HH_ROWS[:n]


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def chat_prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The tokenizer's own rendering of a prompt, generation prompt included."""
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    return list(out["input_ids"] if isinstance(out, Mapping) else out)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_finite(values: list[float], what: str) -> None:
    assert values and all(math.isfinite(v) for v in values), f"{what}: {values}"


def assert_weights_changed(base: Path, trained: Path, share: float = 0.5) -> None:
    """More than `share` of the tensors moved (every one that trains; tied or frozen ones need not)."""
    before, after = load_file(str(base / "model.safetensors")), load_file(str(trained / "model.safetensors"))
    common = [k for k in before if k in after]
    changed = sum(not torch.equal(before[k], after[k]) for k in common)
    assert changed > share * len(common), f"{changed} of {len(common)} tensors changed"


def assert_stops_at_end_of_turn(responses: list[list[int]], max_new_tokens: int, end_id: int) -> int:
    """Every response shorter than the limit ended at the end-of-turn token, and none runs past one;
    returns how many ended (a caller checks some did, or the check says nothing)."""
    finished = 0
    for r in responses:
        assert end_id not in r[:-1], f"sampling went on past the end-of-turn token: {r}"
        if len(r) < max_new_tokens:
            assert r and r[-1] == end_id, f"a response stopped early on something else: {r}"
        finished += bool(r) and r[-1] == end_id
    return finished


def split_rl_batch(batch: dict) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids) of each row of an RL batch (prompts left-padded, responses right)."""
    R = batch["response_mask_BR"].shape[1]
    out = []
    for ids, attn, resp in zip(batch["input_ids_BT"], batch["attention_mask_BT"], batch["response_mask_BR"]):
        prompt = ids[:-R][attn[:-R] > 0].tolist()
        out.append((prompt, ids[-R:][resp > 0].tolist()))
    return out


def fixed_examples(tokenizer) -> list[tuple[list[int], int]]:
    """Two chat sequences, each a prompt and an answer closed by the end-of-turn token, as
    (ids, prompt length)."""
    pairs = [("What is 2 + 3?", "2 + 3 = 5."), ("Name a colour.", "Blue is a colour, and so is red.")]
    out = []
    for question, answer in pairs:
        prompt = chat_prompt_ids(tokenizer, user(question))
        out.append((prompt + tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id],
                    len(prompt)))
    return out


def fixed_batch(tokenizer) -> dict:
    """`fixed_examples` in the RL batch layout (prompts left-padded, answers right-padded)."""
    examples = fixed_examples(tokenizer)
    answers = [ids[n:] for ids, n in examples]
    return collate([ids[:n] for ids, n in examples], [Completion(a, [0.0] * len(a), True) for a in answers],
                   tokenizer.pad_token_id)


@torch.no_grad()
def saved_policy_logprobs(policy_dir: Path, batch: dict) -> torch.Tensor:
    """[B, R] response log-probs from `AutoModelForCausalLM.from_pretrained`, one unpadded row at a time."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(policy_dir, dtype=torch.float32).eval()
    out = torch.zeros(batch["response_mask_BR"].shape)
    for i, (prompt, response) in enumerate(split_rl_batch(batch)):
        ids = torch.tensor([prompt + response])
        logp = torch.log_softmax(model(input_ids=ids).logits[0, len(prompt) - 1:-1].float(), -1)
        out[i, :len(response)] = logp.gather(-1, torch.tensor(response)[:, None])[:, 0]
    return out


@torch.no_grad()
def saved_reward_model_scores(model_dir: Path, sequences: list[list[int]]) -> torch.Tensor:
    """The scalar head at each sequence's last token (its end-of-turn token), from
    `AutoModelForSequenceClassification`. Read off the body's last hidden state: the model's own
    pooling takes the last token that is not padding, and SmolLM2 pads with <|im_end|>."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    body = getattr(model, model.base_model_prefix)
    return torch.tensor([float(model.score(body(input_ids=torch.tensor([s])).last_hidden_state[0, -1])[0])
                         for s in sequences])
