"""The built-in tool task: rows, the warm start's transcript (the same ids an episode
assembles), and the calculator environment's steps through the real tool runner."""

from rlhf.data.tokenizer import build_byte_tokenizer
from rlhf.envs import End, Observation, ObservationRenderer, ToolRunner, Turn, load_environment
from rlhf.envs.calculator_task import multiplication_rows, tool_transcript


def test_rows_split_and_answers():
    train, held_out = multiplication_rows("train"), multiplication_rows("eval")
    assert len(train) + len(held_out) == 900 * 90 and not {r["prompt"] for r in train} & {r["prompt"] for r in held_out}
    a, b = map(int, train[0]["prompt"][len("What is "):-1].split(" * "))
    assert train[0]["answer"] == str(a * b) and train[0]["response"].endswith(f"\\boxed{{{a * b}}}")
    share = sum("<calc>" in r["response"] for r in train) / len(train)
    assert 0.2 < share < 0.3


def test_the_warm_start_transcript_is_what_an_episode_assembles():
    tok = build_byte_tokenizer()
    eos = tok.eos_token_id
    turn1 = tok("<calc>372*45</calc>", add_special_tokens=False)["input_ids"] + [eos]
    obs = ObservationRenderer(tok, eos).ids([{"role": "tool", "content": "16740"}])
    turn2 = tok("\\boxed{16740}", add_special_tokens=False)["input_ids"]
    assert tok(tool_transcript("372*45", "16740", "16740"), add_special_tokens=False)["input_ids"] == turn1 + obs + turn2


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
