"""Public data formats through the data layer: GSM8K, MATH, chat messages, Anthropic HH; column
mapping, packing, and errors that name the column and the file."""

import gzip
import json
from pathlib import Path

import pytest
import torch

from rlhf.config import TinyModelConfig
from rlhf.config.supervised import PreferenceDataConfig, SFTDataConfig
from rlhf.data.files import DataError, read_rows
from rlhf.data.formats import parse_hh, preference_example, sft_example
from rlhf.data.sequences import encode, model_inputs, pack_batch, pad_batch
from rlhf.data.tokenizer import build_byte_tokenizer
from rlhf.models import load_causal_lm, tiny_model_path
from rlhf.scoring import end_positions, sequence_logps

TOK = build_byte_tokenizer()


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_gsm8k_and_math_map_to_prompt_and_response(tmp_path):
    gsm = _jsonl(tmp_path / "gsm8k.jsonl", [{"question": "Tom has 3 apples and buys 4. How many?",
                                            "answer": "3 + 4 = <<3+4=7>>7\n#### 7"}])
    keys = SFTDataConfig(prompt_key="question", response_key="answer")
    prompt, response = sft_example(read_rows(gsm)[0], keys, gsm, 0)
    assert prompt == [{"role": "user", "content": "Tom has 3 apples and buys 4. How many?"}]
    assert response.endswith("#### 7")
    math = _jsonl(tmp_path / "math.jsonl", [{"problem": "What is $1+1$?", "solution": "So $\\boxed{2}$.",
                                            "level": "Level 1", "type": "Algebra"}])
    prompt, response = sft_example(read_rows(math)[0], SFTDataConfig(prompt_key="problem", response_key="solution"),
                                   math, 0)
    ids, n_prompt = encode(prompt, response, TOK)
    assert TOK.decode(ids[n_prompt:]) == "So $\\boxed{2}$.<|im_end|>"  # the loss covers the response + EOS
    assert TOK.decode(ids[:n_prompt]).endswith("<|im_start|>assistant\n")


def test_messages_last_assistant_turn_is_the_target(tmp_path):
    path = _jsonl(tmp_path / "chat.jsonl", [{"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"}]}])
    prompt, response = sft_example(read_rows(path)[0], SFTDataConfig(), path, 0)
    assert [m["role"] for m in prompt] == ["system", "user"] and response == "4"
    bad = _jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(DataError, match=r"bad.jsonl: row 1: the last message must be the assistant"):
        sft_example(read_rows(bad)[0], SFTDataConfig(), bad, 0)


def test_hh_transcripts_split_into_shared_prompt_and_answers(tmp_path):
    chosen = "\n\nHuman: How do I bake bread?\n\nAssistant: Flour, water, yeast.\n\nHuman: Time?\n\nAssistant: An hour."
    rejected = "\n\nHuman: How do I bake bread?\n\nAssistant: Flour, water, yeast.\n\nHuman: Time?\n\nAssistant: No."
    path = tmp_path / "hh.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps({"chosen": chosen, "rejected": rejected}) + "\n")
    prompt, c, r = preference_example(read_rows(str(path))[0], PreferenceDataConfig(), str(path), 0)
    assert prompt == [{"role": "user", "content": "How do I bake bread?"},
                      {"role": "assistant", "content": "Flour, water, yeast."}, {"role": "user", "content": "Time?"}]
    assert (c, r) == ("An hour.", "No.")
    assert parse_hh(chosen)[-1] == {"role": "assistant", "content": "An hour."}


def test_missing_column_names_column_and_file_and_empty_file_is_an_error(tmp_path):
    path = _jsonl(tmp_path / "prefs.jsonl", [{"prompt": "p", "chosen": "a", "worse": "b"}])
    with pytest.raises(DataError, match=r"prefs.jsonl: row 1 has no column 'rejected'"):
        preference_example(read_rows(path)[0], PreferenceDataConfig(), path, 0)
    path = _jsonl(tmp_path / "sft.jsonl", [{"question": "q"}])
    with pytest.raises(DataError, match=r"sft.jsonl: row 1 has no column 'answer'"):
        sft_example(read_rows(path)[0], SFTDataConfig(prompt_key="question", response_key="answer"), path, 0)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="empty.jsonl: no rows"):
        read_rows(str(tmp_path / "empty.jsonl"))


def test_pack_layout_by_hand():
    b = pack_batch([([5, 6, 7], 1), ([8, 9], 1), ([10, 11, 12, 13], 2)], max_len=6, pad_id=0)
    assert b["input_ids_BT"].tolist() == [[5, 6, 7, 8, 9], [10, 11, 12, 13, 0]]
    assert b["position_ids_BT"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]
    assert b["segment_ids_BT"].tolist() == [[1, 1, 1, 2, 2], [1, 1, 1, 1, 0]]
    assert b["loss_mask_BT"].tolist() == [[0, 1, 1, 0, 1], [0, 0, 1, 1, 0]]
    rows, cols = end_positions(b)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 2), (0, 4), (1, 3)]
    mask = model_inputs(b, "cpu")["attention_mask"][0, 0]
    assert mask[4].tolist() == [False, False, False, True, True]  # the 2nd example sees only itself
    with pytest.raises(ValueError, match="one row"):  # FlashAttention-2 separates examples within one row only
        model_inputs(b, "cpu", flash=True)
    one = model_inputs(pack_batch([([5, 6, 7], 1), ([8, 9], 1)], None, 0), "cpu", flash=True)
    assert sorted(one) == ["input_ids", "position_ids"] and one["position_ids"].tolist() == [[0, 1, 2, 0, 1]]


def test_packed_log_probs_equal_padded(tmp_path):
    model = load_causal_lm(tiny_model_path(TinyModelConfig(), str(tmp_path), 0), torch.float32).eval()
    examples = [encode([{"role": "user", "content": f"What is {a} + {b}?"}], f"\\boxed{{{a + b}}}", TOK)
                for a, b in [(12, 30), (45, 7), (99, 99), (3, 4)]]
    with torch.no_grad():
        padded = sequence_logps(model, pad_batch(examples, TOK.pad_token_id), "cpu")
        packed = sequence_logps(model, pack_batch(examples, 100, TOK.pad_token_id), "cpu")
    assert packed.shape == (4,) and torch.allclose(packed, padded, atol=1e-4)


def test_shared_samples_load(shared_data):
    gsm = str(shared_data / "gsm8k" / "test.jsonl")
    rows = read_rows(gsm)
    keys = SFTDataConfig(prompt_key="question", response_key="answer")
    examples = [sft_example(r, keys, gsm, i) for i, r in enumerate(rows[:50])]
    assert all("####" in response for _, response in examples)
    hh = str(shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz")
    pairs = [preference_example(r, PreferenceDataConfig(), hh, i) for i, r in enumerate(read_rows(hh)[:200])]
    assert all(prompt[-1]["role"] == "user" for prompt, _, _ in pairs)
    assert sum(c != r for _, c, r in pairs) > 150  # a few HH pairs have identical answers
