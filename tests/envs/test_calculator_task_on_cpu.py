"""The built-in tool task: rows, the warm start's transcript (the same ids an episode
assembles, loss on the model's turns only), and the calculator environment's steps through
the real tool runner."""

import pytest

from rlhf.data.sequences import encode_turns, pack_batch
from rlhf.data.tokenizer import build_byte_tokenizer
from rlhf.envs import End, Observation, ObservationRenderer, ToolRunner, Turn, load_environment
from rlhf.envs.calculator_task import TOOL_SHARE, multiplication_rows, tool_transcript


def test_rows_split_and_answers():
    train, held_out = multiplication_rows("train"), multiplication_rows("eval")
    assert len(train) + len(held_out) == 900 * 90 and not {r["prompt"] for r in train} & {r["prompt"] for r in held_out}
    a, b = map(int, train[0]["prompt"][len("What is "):-1].split(" * "))
    response = train[0]["response"]
    last = response[-1]["content"] if isinstance(response, list) else response
    assert train[0]["answer"] == str(a * b) and last == f"\\boxed{{{a * b}}}"
    share = sum(isinstance(r["response"], list) for r in train) / len(train)
    assert abs(share - TOOL_SHARE) < 0.02


def test_the_warm_start_transcript_is_what_an_episode_assembles():
    tok = build_byte_tokenizer()
    eos = tok.eos_token_id
    prompt = [{"role": "user", "content": "What is 372 * 45?"}]
    prompt_ids = tok(tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True),
                     add_special_tokens=False)["input_ids"]
    turn1 = tok("<calc>372*45</calc>", add_special_tokens=False)["input_ids"] + [eos]
    obs = ObservationRenderer(tok, eos).ids([{"role": "tool", "content": "16740"}])
    turn2 = tok("\\boxed{16740}", add_special_tokens=False)["input_ids"] + [eos]
    ids, mask = encode_turns(prompt, tool_transcript("372*45", "16740", "16740"), tok)
    assert ids == prompt_ids + turn1 + obs + turn2
    # the loss is on the model's turns only: not the prompt, not the tool's reply
    assert mask == [0] * len(prompt_ids) + [1] * len(turn1) + [0] * len(obs) + [1] * len(turn2)
    row = pack_batch([(ids, mask), (turn2, 2)], None, 0)
    assert row["loss_mask_BT"][0].tolist() == mask + [0, 0] + [1] * (len(turn2) - 2)
    with pytest.raises(ValueError, match="start and end with an assistant"):
        encode_turns(prompt, [{"role": "tool", "content": "1"}], tok)


def test_a_malformed_multi_turn_response_names_its_row():
    from rlhf.data.files import DataError
    from rlhf.loops.warmstart import _example

    tok = build_byte_tokenizer()
    good = {"prompt": "What is 2 * 3?", "response": tool_transcript("2*3", "6", "6")}
    ids, mask = _example(good, "prompt", tok, "rows.jsonl", 0)
    assert isinstance(mask, list) and len(mask) == len(ids)  # a per-token mask, not a prompt length
    bad = {"prompt": "What is 2 * 3?", "response": ["<calc>2*3</calc>"]}
    with pytest.raises(DataError, match=r"rows.jsonl: row 3: 'response'"):
        _example(bad, "prompt", tok, "rows.jsonl", 2)


def test_calculator_env_steps():
    cls = load_environment("calculator")
    env = cls()
    env.tool_runner = ToolRunner(cls.tools, timeout_s=10)
    assert env.start({"prompt": "What is 372 * 45?"}) == [{"role": "user", "content": "What is 372 * 45?"}]
    obs = env.step(Turn("<calc>372*45</calc>", [], 0))
    assert isinstance(obs, Observation) and obs.messages[0]["content"] == "16740" and obs.tool_calls == 1
    bad = env.step(Turn("<calc>372*</calc>", [], 1))
    assert bad.tool_errors == 1 and bad.messages[0]["content"].startswith("error: SyntaxError")
    assert isinstance(env.step(Turn("\\boxed{16740}", [], 2)), End)
