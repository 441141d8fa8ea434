import pickle
import threading

import pytest

from polyreward.rewards import RewardComponent, RewardSet, check_reward
from polyreward.rewards.answers import (
    answer_reward,
    exact_match,
    extract_answer,
    extract_choice,
    last_boxed,
    math_equivalent,
    numeric_match,
    parse_number,
)


# ------------------------------------------------------------------ extraction
def test_extract_answer_from_tag_boxed_or_whole_text():
    assert extract_answer("<think>x</think><answer> 42 </answer>") == "42"
    assert extract_answer("<answer>1</answer> then <answer>2</answer>") == "2"  # the last tag
    assert extract_answer("<answer>so \\boxed{\\frac{1}{2}}</answer>") == "\\frac{1}{2}"
    assert extract_answer("no tag, but \\boxed{7}") == "7"
    assert extract_answer("no tag, but \\boxed{7}", boxed=False) is None
    assert extract_answer("<result>3</result>", tag="result") == "3"
    assert extract_answer(" all of it ", tag=None, boxed=False) == "all of it"
    assert extract_answer("nothing here") is None


def test_last_boxed_matches_nested_braces():
    assert last_boxed("\\boxed{1} and \\boxed{\\frac{a}{b^{2}}}") == "\\frac{a}{b^{2}}"
    assert last_boxed("\\fbox{x}") == "x"
    assert last_boxed("\\boxed{unclosed") is None


def test_exact_match_normalizes_case_and_whitespace():
    assert exact_match("  New   York\n", "new york")
    assert not exact_match("New York City", "new york")


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("B", "B"),
        ("(b)", "B"),
        ("[C].", "C"),
        ("**D**", "D"),
        ("\\text{A}", "A"),
        ("Answer: B", "B"),
        ("The correct answer is: (c)", "C"),
        ("the answer is C.", "C"),
        ("Option D", "D"),
        ("B. Paris", "B"),
        ("(B) Paris", "B"),
        ("B) Paris", "B"),
        ("C: Rome", "C"),
        ("so it must be (C)", "C"),
        ("Final answer: **D**", "D"),
        ("A cat sat on the mat", None),
        ("between (A) and (B)", None),
        ("The answer is a number", None),
        ("K", None),
    ],
)
def test_extract_choice(text, letter):
    assert extract_choice(text) == letter


@pytest.mark.parametrize(
    ("text", "lenient", "strict"),
    [
        ("1,234.5", 1234.5, 1234.5),
        ("-0.5", -0.5, -0.5),
        ("1e-3", 0.001, 0.001),
        ("$12", 12.0, 12.0),
        ("45%", 45.0, 45.0),
        ("3/4", 0.75, 0.75),
        ("\\frac{3}{4}", 0.75, 0.75),
        (".5", 0.5, 0.5),
        ("about 12.5 million", 12.5, None),
        ("12 apples", 12.0, None),
        ("Paris", None, None),
        ("1/0", None, None),
    ],
)
def test_parse_number(text, lenient, strict):
    assert parse_number(text) == lenient
    assert parse_number(text, strict=True) == strict


def test_numeric_match_tolerance_is_relative_to_the_reference():
    assert numeric_match(104.9, 100.0)  # |4.9| <= 0.05 * 100
    assert not numeric_match(105.1, 100.0)
    assert not numeric_match(1e-9, 0.0)  # rel_tol is useless at 0 ...
    assert numeric_match(1e-9, 0.0, abs_tol=1e-6)  # ... abs_tol covers it


# ------------------------------------------------------------------ the batched reward
def test_exact_and_choice_rewards_on_strings_and_chat_messages():
    exact = answer_reward("exact")
    assert exact.__name__ == "answer_exact"
    completions = ["<answer>Paris</answer>", [{"role": "assistant", "content": "<answer> paris </answer>"}], "Paris"]
    assert exact(["q"] * 3, completions, answer=["paris", "Paris", "Paris"]) == [1.0, 1.0, 0.0]  # no tag -> 0
    choice = answer_reward("choice")
    out = choice(None, ["<answer>(B)</answer>", "<answer>B. 12</answer>", "<answer>C</answer>"], answer=["B", "(B)", "B"])
    assert out == [1.0, 1.0, 0.0]


def test_numeric_reward_uses_tolerance_and_falls_back_to_strings():
    chart = answer_reward("numeric", rel_tol=0.05)
    completions = ["<answer>about 1,040</answer>", "<answer>1,060</answer>", "<answer>Q3</answer>", "<answer>q3</answer>"]
    assert chart(None, completions, answer=[1000, "1000", "Q3", "Q3"]) == [1.0, 0.0, 1.0, 1.0]


def test_math_reward_uses_math_verify_equivalence():
    math = answer_reward("math")
    completions = [
        "<answer>\\frac{1}{2}</answer>",
        "<answer>0.5</answer>",
        "<answer>(x+1)^2</answer>",
        "<answer>3</answer>",
        "I think \\boxed{\\sqrt{2}/2}",
        "no final answer",
    ]
    refs = ["1/2", "\\frac12", "x^2+2x+1", "2", "\\frac{\\sqrt{2}}{2}", "1"]
    assert math(None, completions, answer=refs) == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    assert math_equivalent("\\frac{2}{4}", "0.5") and not math_equivalent("x", "y")


def test_none_reference_is_not_applicable_and_a_list_means_any():
    exact = answer_reward("exact")
    assert exact(None, ["<answer>a</answer>"] * 3, answer=[None, ["b", "A"], ["b"]]) == [None, 1.0, 0.0]


def test_bad_columns_and_references_raise_naming_sample_and_column():
    exact = answer_reward("exact")
    with pytest.raises(KeyError, match="needs the dataset column 'answer'.*\\['solution'\\]"):
        exact(None, ["x"], solution=["x"], completion_ids=[[1]])
    with pytest.raises(ValueError, match="column 'answer' must hold one value per completion \\(2\\), got 1 values"):
        exact(None, ["x", "y"], answer=["x"])
    with pytest.raises(ValueError, match="sample 1, column 'answer': expected a string or number, got dict"):
        exact(None, ["x", "y"], answer=["x", {"a": 1}])
    with pytest.raises(ValueError, match="sample 0, column 'gold': no option letter"):
        answer_reward("choice", column="gold")(None, ["<answer>B</answer>"], gold=["none of these"])
    with pytest.raises(ValueError, match="sample 0, column 'answer': math-verify cannot parse"):
        answer_reward("math")(None, ["no answer at all"], answer=["  "])  # checked even without an answer


def test_factory_validates_its_options():
    with pytest.raises(ValueError, match="mode='fuzzy' is not one of"):
        answer_reward("fuzzy")
    with pytest.raises(ValueError, match="timeout_s must be a whole number"):
        answer_reward("math", timeout_s=0.5)


# ------------------------------------------------------------------ threads and processes
def test_math_reward_works_off_the_main_thread_where_math_verify_alone_fails():
    from math_verify import parse

    box = {}

    def run():
        try:
            parse("$x^2$", parsing_timeout=5)
        except ValueError as err:  # math-verify's signal.alarm timeout needs the main thread
            box["raw"] = str(err)
        box["ours"] = answer_reward("math")(None, ["<answer>0.5</answer>"], answer=["1/2"])

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert "doesn't support threaded environment" in box["raw"]
    assert box["ours"] == [1.0]


def test_rewards_pickle_and_run_on_the_process_pool_and_in_a_timeout_thread():
    math = answer_reward("math")
    assert pickle.loads(pickle.dumps(math)) == math
    completions = ["<answer>1/2</answer>", "<answer>2</answer>", "<answer>\\pi</answer>", "<answer>x</answer>"]
    refs = ["0.5", "3", "\\pi", "y"]
    with RewardSet(
        [
            RewardComponent(math, executor="process"),
            RewardComponent(answer_reward("exact"), timeout_s=30.0),  # inline, in a watchdog thread
            RewardComponent(answer_reward("math", name="math_in_thread"), timeout_s=30.0),
        ],
        workers=1,
    ) as rs:
        batch = rs.score(["p"] * 4, completions, answer=refs).batch
    assert batch["answer_math"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert batch["math_in_thread"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert batch["answer_exact"].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_check_reward_finds_no_problem():
    samples = [
        {"prompt": "1+1?", "completion": "<answer>2</answer>", "answer": "2"},
        {"prompt": "1+1?", "completion": "<answer>3</answer>", "answer": "2"},
    ]
    report = check_reward(answer_reward("numeric"), samples)
    assert report.ok, str(report)
    assert report.values == [1.0, 0.0]
    assert any("picklable" in note and "can run" in note for note in report.notes)
