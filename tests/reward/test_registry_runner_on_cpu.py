import textwrap

import pytest

from rlhf.reward import RewardRunner, RewardSpecError, load_reward, registered_rewards, reward


@reward("test_ends_politely")
def ends_politely(prompt: str, completion: str, **sample) -> float:
    return 1.0 if completion.rstrip().endswith("Thanks!") else 0.0


def test_registry_by_name_and_duplicate_names():
    assert "test_ends_politely" in registered_rewards() and "math_verify" in registered_rewards()
    assert load_reward("test_ends_politely")("p", "ok. Thanks!") == 1.0
    with pytest.raises(RewardSpecError, match="already registered"):
        reward("test_ends_politely")(lambda prompt, completion, **kw: 0.0)


def test_unknown_name_lists_registered():
    with pytest.raises(RewardSpecError, match="unknown reward 'math_verfy'; registered: .*math_verify"):
        load_reward("math_verfy")


def test_select_by_module_path(tmp_path, monkeypatch):
    (tmp_path / "my_pkg_rewards.py").write_text("def short(prompt, completion, **kw):\n    return -len(completion)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_reward("my_pkg_rewards:short")("p", "abc") == -3
    with pytest.raises(RewardSpecError, match="cannot import module 'no_such_mod'"):
        load_reward("no_such_mod:f")
    with pytest.raises(RewardSpecError, match="has no function 'nope'.*short"):
        load_reward("my_pkg_rewards:nope")


def test_select_by_file_and_required_columns(tmp_path):
    f = tmp_path / "r.py"
    f.write_text("def uses_answer(prompt, completion, answer):\n    return float(completion == answer)\n")
    fn = load_reward(f"{f}:uses_answer")
    assert fn.required_columns == ("answer",)
    assert fn("p", "4", answer="4", response_length=2) == 1.0  # unknown keywords are not passed
    with pytest.raises(RewardSpecError, match="file not found"):
        load_reward(f"{tmp_path}/missing.py:f")


def test_wrong_signature_names_function_and_expectation(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text("def only_one(completion):\n    return 1.0\n")
    with pytest.raises(RewardSpecError, match=r"only_one.*\(completion\).*expected \(prompt: str, completion: str"):
        load_reward(f"{f}:only_one")


def _write(tmp_path, body: str) -> str:
    f = tmp_path / "rw.py"
    f.write_text(textwrap.dedent(body))
    return str(f)


@pytest.mark.parametrize("workers", [0, 1])
def test_weights_dicts_failures_and_timeouts(tmp_path, workers):
    path = _write(tmp_path, """
        import time
        def length(prompt, completion, **kw):
            return {"score": float(len(completion)), "long": float(len(completion) > 2)}
        def boom(prompt, completion, **kw):
            if completion == "bb":
                raise RuntimeError("bug")
            return 1.0
        def sleepy(prompt, completion, **kw):
            if completion == "ccc":
                time.sleep(30)
            return 2.0
    """)
    with RewardRunner([f"{path}:length", f"{path}:boom", f"{path}:sleepy"], [1.0, 10.0, 0.5], default=-1.0,
                      timeout_s=1.0, num_workers=workers) as runner:
        scores, m = runner.score(["p"] * 3, ["a", "bb", "ccc"])
    # a: 1 + 10*1 + 0.5*2 = 12 ; bb: 2 + 10*(-1) + 0.5*2 = -7 ; ccc: 3 + 10*1 + 0.5*(-1) = 12.5
    assert scores == pytest.approx([12.0, -7.0, 12.5])
    assert m["reward/boom/failures"] == 1 and m["reward/sleepy/failures"] == 1
    assert m["reward/length/long"] == pytest.approx(1 / 3) and m["reward/length/mean"] == pytest.approx(2.0)


def test_batched_and_async_rewards(tmp_path):
    path = _write(tmp_path, """
        import asyncio
        from rlhf.reward import reward

        @reward("test_batched_len", batched=True)
        def batched_len(prompts, completions, **columns):
            return [float(len(c)) for c in completions]

        async def slow_ok(prompt, completion, **kw):
            await asyncio.sleep(0.01)
            return 1.0
    """)
    with RewardRunner([f"{path}:batched_len", f"{path}:slow_ok"], num_workers=1) as runner:
        scores, m = runner.score(["p", "p"], ["ab", "abcd"])
    assert scores == [3.0, 5.0] and m["reward/slow_ok/mean"] == 1.0


def test_a_dying_worker_is_survived(tmp_path):
    path = _write(tmp_path, """
        import os
        def crash(prompt, completion, **kw):
            if completion == "die":
                os._exit(1)
            return 1.0
    """)
    with RewardRunner([f"{path}:crash"], num_workers=1, chunk_size=1, timeout_s=5) as runner:
        scores, m = runner.score(["p"] * 3, ["ok", "die", "ok"])
        assert scores == [1.0, 0.0, 1.0] and m["reward/crash/failures"] == 1
        assert runner.score(["p"], ["ok"])[0] == [1.0]  # the pool was rebuilt


def test_weights_length_must_match():
    with pytest.raises(ValueError, match="2 reward weights for 1"):
        RewardRunner(["math_verify"], [1.0, 2.0], num_workers=0)


@pytest.mark.parametrize("workers", [0, 1])
def test_non_finite_scores_are_failed_calls(tmp_path, workers):
    path = _write(tmp_path, """
        def odd(prompt, completion, **kw):
            return {"nan": {"score": float("nan")}, "huge": 1e300, "inf": float("-inf"), "bad_metric":
                    {"score": 1.0, "m": float("nan")}, "ok": {"score": 0.5}}[completion]
    """)
    with RewardRunner([f"{path}:odd"], default=0.0, num_workers=workers) as runner:
        scores, m = runner.score(["p"] * 5, ["nan", "huge", "inf", "bad_metric", "ok"])
    # every non-finite (or beyond float32) value is a failure scoring the default; only "ok" counts
    assert scores == [0.0, 0.0, 0.0, 0.0, 0.5] and m["reward/odd/failures"] == 4


def test_interrupts_and_exits_inside_rewards_are_their_failures(tmp_path):
    path = _write(tmp_path, """
        import sys
        from rlhf.reward import reward

        def interrupts(prompt, completion, **kw):
            if completion == "x":
                raise KeyboardInterrupt
            return 1.0

        @reward("test_exits_batched", batched=True)
        def exits(prompts, completions, **kw):
            sys.exit(3)
    """)
    with RewardRunner([f"{path}:interrupts", f"{path}:exits"], num_workers=1) as runner:
        scores, m = runner.score(["p"] * 2, ["x", "y"])
        assert scores == [0.0, 1.0]
        assert m["reward/interrupts/failures"] == 1 and m["reward/test_exits_batched/failures"] == 2
        assert runner.score(["p"], ["y"])[0] == [1.0]  # the worker is still there


def test_a_reward_file_that_exits_at_import_is_named(tmp_path):
    from rlhf.reward.loading import probe_reward

    quits = _write(tmp_path, "import os\nos._exit(7)\n")
    with pytest.raises(RewardSpecError, match=r"rw\.py:f.*ended the process \(exit code 7\)"):
        probe_reward(f"{quits}:f")
    raises = tmp_path / "raises.py"
    raises.write_text("raise SystemExit('no')\n")
    with pytest.raises(RewardSpecError, match=r"importing .*raises\.py failed: SystemExit"):
        load_reward(f"{raises}:f")


def test_columns_a_reward_needs_in_every_row():
    fn = load_reward("math_verify")
    assert fn.missing_columns({"answer": "3"}) == [] and fn.missing_columns({"solution": "3"}) == []
    assert fn.missing_columns({"answer": None}) == ["answer or solution"]
