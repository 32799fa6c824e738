import pytest

from rlhf.reward import load_reward
from rlhf.reward.builtins.math_reward import extract_answer, gold_answer, last_boxed

MV = load_reward("math_verify")

# (completion, gold column, gold value, expected score)
CASES = [
    ("so the answer is \\boxed{82}", "answer", "82", 1.0),
    ("\\boxed{82}", "answer", "81", 0.0),
    ("7+5=12 3+4+1=8 \\boxed{82}", "answer", "82", 1.0),
    ("\\boxed{\\frac{1}{2}}", "answer", "0.5", 1.0),
    ("\\boxed{0.5}", "answer", "\\frac{1}{2}", 1.0),
    ("\\boxed{\\frac{3}{4}}", "solution", "Hence the result is $\\boxed{\\frac{3}{4}}$.", 1.0),
    ("\\boxed{\\frac{3}{4}}", "solution", "So $\\boxed{\\frac{2}{3}}$.", 0.0),
    ("\\boxed{\\dfrac{6}{8}}", "answer", "3/4", 1.0),
    ("The answer is 72.", "answer", "Natalia sold 48+24 = 72 clips.\n#### 72", 1.0),
    ("The answer is 71.", "answer", "Natalia sold 48+24 = 72 clips.\n#### 72", 0.0),
    ("She earned 1,000 dollars in total: 1000", "answer", "...\n#### 1,000", 1.0),
    ("\\boxed{1000}", "answer", "#### 1,000", 1.0),
    ("\\boxed{1,000}", "answer", "#### 1000", 1.0),
    ("\\boxed{-5}", "answer", "-5", 1.0),
    ("\\boxed{5}", "answer", "-5", 0.0),
    ("\\boxed{\\sqrt{2}}", "answer", "\\sqrt{2}", 1.0),
    ("\\boxed{2\\sqrt{2}}", "answer", "\\sqrt{8}", 1.0),
    ("\\boxed{\\pi}", "answer", "\\pi", 1.0),
    ("\\boxed{x^2+2x+1}", "answer", "(x+1)^2", 1.0),
    ("\\boxed{3}", "solution", "We get \\boxed{\\boxed{3}}", 1.0),
    ("first \\boxed{1} then corrected \\boxed{2}", "answer", "2", 1.0),
    ("first \\boxed{2} then corrected \\boxed{1}", "answer", "2", 0.0),
    ("I don't know.", "answer", "4", 0.0),
    ("", "answer", "4", 0.0),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "answer", "\\frac{\\sqrt{3}}{2}", 1.0),
    ("\\boxed{12.50}", "answer", "12.5", 1.0),
    ("The total is 18", "answer", "#### 18", 1.0),
    ("2 + 2 = 5", "answer", "4", 0.0),
    ("\\boxed{\\{1, 2\\}}", "answer", "\\{1,2\\}", 1.0),
    ("\\boxed{(1, 2)}", "answer", "(1,2)", 1.0),
    ("\\boxed{25\\%}", "answer", "25\\%", 1.0),
    ("\\boxed{10^{3}}", "answer", "1000", 1.0),
]


@pytest.mark.parametrize("completion,column,gold,expected", CASES)
def test_math_verify_table(completion, column, gold, expected):
    assert MV("prompt", completion, **{column: gold})["score"] == expected


def test_table_is_large_enough():
    assert len(CASES) >= 30


def test_no_answer_is_flagged():
    assert MV("", "nothing here", answer="3") == {"score": 0.0, "has_answer": 0.0, "format_rate": 0.0}


# (completion, gold, lenient score, strict score, has the requested form: a non-empty last \boxed{})
STRICT_CASES = [
    ("so \\boxed{72}", "72", 1.0, 1.0, 1.0),
    ("The answer is 72.", "72", 1.0, 0.0, 0.0),  # stated, not boxed
    ("She has 48 + 24 = 72", "#### 72", 1.0, 0.0, 0.0),  # a bare last number
    ("\\boxed{70}", "72", 0.0, 0.0, 1.0),  # the right form, a wrong value
    ("The answer is 71.", "72", 0.0, 0.0, 0.0),
    ("first \\boxed{72}, checked with 9 * 8", "72", 1.0, 1.0, 1.0),  # a later bare number does not displace it
    ("\\boxed{71}, so the answer is 72", "72", 0.0, 0.0, 1.0),  # the box wins in both modes
    ("\\boxed{} the answer is 72", "72", 1.0, 0.0, 0.0),  # an empty box is no answer
    ("\\boxed{72", "72", 1.0, 0.0, 0.0),  # an unclosed box is no answer either
    ("\\boxed{\\frac{1}{2}}", "0.5", 1.0, 1.0, 1.0),
]
STRICT = load_reward("math_verify_strict")


@pytest.mark.parametrize("completion,gold,lenient,strict,form", STRICT_CASES)
def test_strict_counts_only_the_last_box(completion, gold, lenient, strict, form):
    lenient_out, strict_out = MV("p", completion, answer=gold), STRICT("p", completion, answer=gold)
    assert (lenient_out["score"], strict_out["score"]) == (lenient, strict)
    assert lenient_out["format_rate"] == strict_out["format_rate"] == form
    assert strict_out["has_answer"] == form  # strict finds an answer exactly when the form is there


def test_strict_and_lenient_differ_exactly_where_the_box_is_missing():
    for completion, gold, lenient, strict, form in STRICT_CASES:
        assert (lenient != strict) == (lenient == 1.0 and not form), completion


def test_format_rate_is_the_share_of_boxed_completions_in_a_batch():
    from rlhf.reward import RewardRunner

    completions = [c for c, *_ in STRICT_CASES]
    with RewardRunner(["math_verify_strict", "math_verify"], num_workers=0) as runner:
        total, metrics = runner.score(["p"] * len(completions), completions, {"answer": [g for _, g, *_ in STRICT_CASES]})
    # 5 of the 10 have a non-empty last box; strict scores 3 of 10, lenient 7 of 10
    assert metrics["reward/math_verify_strict/format_rate"] == metrics["reward/math_verify/format_rate"] == 0.5
    assert metrics["reward/math_verify_strict/mean"] == pytest.approx(0.3)
    assert metrics["reward/math_verify/mean"] == pytest.approx(0.7)
    assert total == [lenient + strict for _, _, lenient, strict, _ in STRICT_CASES]


def test_extraction_helpers():
    assert last_boxed("a \\boxed{\\frac{1}{2}} b \\boxed{x_{1}}") == "x_{1}"
    assert last_boxed("\\boxed{unclosed") is None
    assert extract_answer("The answer is 42.") == "42"
    assert gold_answer("steps\n#### 7") == "7" and gold_answer(None, "so \\boxed{9}") == "9"


def test_missing_gold_raises():
    with pytest.raises(ValueError, match="answer"):
        MV("p", "\\boxed{1}")
