import json

import pytest

from rlhf.config import DataConfig
from rlhf.data.files import DataError, read_rows
from rlhf.data.prompts import PromptSampler, build_prompt_set, load_rows
from rlhf.data.synthetic import CARRY_SHARE, CARRY_SLIP, carries, task_rows
from rlhf.data.tokenizer import build_byte_tokenizer



def _pair(row: dict) -> tuple[int, int]:
    a, b = map(int, row["prompt"][len("What is "):-1].split(" + "))
    return a, b


def test_addition_splits_are_disjoint_and_correct():
    train, held = task_rows("addition", "train"), task_rows("addition", "eval")
    assert len(train) + len(held) == 90 * 90 and len(held) == 810
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in held}
    slips = n_carry = 0
    for r in train:
        a, b = _pair(r)
        assert r["answer"] == str(a + b)  # the gold is always right
        carry = carries(a, b)
        right = f"{a % 10}+{b % 10}={a % 10 + b % 10} {a // 10}+{b // 10}{'+1' if carry else ''}="
        if r["response"].startswith(right):
            assert r["response"].endswith(f"\\boxed{{{a + b}}}")
        else:  # the student forgot the carry: the tens digit and the boxed sum are 10 short
            assert carry and r["response"].endswith(f"\\boxed{{{a + b - 10}}}")
            slips += 1
        n_carry += carry
    assert abs(slips / n_carry - CARRY_SLIP) < 0.03


def test_carry_addition_keeps_the_held_out_split_and_raises_the_carry_share():
    """Every carrying pair of each `addition` split, and few enough others that CARRY_SHARE carry."""
    for split in ("train", "eval"):
        full, heavy = task_rows("addition", split), task_rows("carry_addition", split)
        full_pairs, heavy_pairs = {_pair(r) for r in full}, [_pair(r) for r in heavy]
        assert set(heavy_pairs) <= full_pairs and len(set(heavy_pairs)) == len(heavy_pairs)
        assert {p for p in full_pairs if carries(*p)} <= set(heavy_pairs)
        assert abs(sum(carries(*p) for p in heavy_pairs) / len(heavy_pairs) - CARRY_SHARE) < 0.005
    assert not {_pair(r) for r in task_rows("carry_addition", "train")} & {
        _pair(r) for r in task_rows("carry_addition", "eval")}


def test_byte_tokenizer_round_trips_and_has_chat_template():
    tok = build_byte_tokenizer()
    text = "What is 37 + 45? \\boxed{82} é"
    assert tok.decode(tok(text)["input_ids"]) == text
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id != tok.eos_token_id


def test_malformed_jsonl_names_file_and_line(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"prompt": "a"}\n{"prompt": "b"\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: invalid JSON"):
        read_rows(str(f))


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="not found: .*nope.jsonl"):
        read_rows(str(tmp_path / "nope.jsonl"))
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no rows"):
        read_rows(str(tmp_path / "e.jsonl"))


def test_missing_prompt_column_names_column_and_file(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"question": "q", "answer": "1"}) + "\n")
    with pytest.raises(DataError, match=r"d\.jsonl: row 1 has no column 'prompt'.*question"):
        load_rows(DataConfig(train=str(f)), "train")


def test_prompt_set_applies_chat_template_and_keeps_columns(tmp_path):
    f = tmp_path / "gsm.jsonl"
    f.write_text(json.dumps({"question": "What is 1+1?", "answer": "1+1=2\n#### 2"}) + "\n")
    cfg = DataConfig(train=str(f), prompt_key="question")
    rows, source = load_rows(cfg, "train")
    ps = build_prompt_set(rows, build_byte_tokenizer(), cfg, source)
    assert ps.prompts[0].endswith("<|im_start|>assistant\n") and "What is 1+1?" in ps.prompts[0]
    assert ps.columns["answer"] == ["1+1=2\n#### 2"]


def test_shared_gsm8k_sample_loads(shared_data):
    cfg = DataConfig(train=str(shared_data / "gsm8k" / "test.jsonl"), prompt_key="question", max_prompt_len=2048)
    rows, source = load_rows(cfg, "train")
    ps = build_prompt_set(rows[:50], build_byte_tokenizer(), cfg, source)
    assert len(ps) == 50 and all("####" in a for a in ps.columns["answer"])


def test_sampler_is_seeded_and_resumable():
    a, b = PromptSampler(10, seed=3), PromptSampler(10, seed=3)
    first = a.next(7) + a.next(7)
    assert first == b.next(14) and sorted(first[:10]) == list(range(10))
    c = PromptSampler(10, seed=3)
    c.next(7)
    state = c.state()
    d = PromptSampler(10, seed=3)
    d.load_state(state)
    assert d.next(7) == first[7:]
