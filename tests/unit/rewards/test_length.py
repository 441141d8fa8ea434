import math
import pickle

import pytest

from polyreward.rewards.answers import answer_reward
from polyreward.rewards.length import (
    completion_lengths,
    hbpo_length_reward,
    overlong_penalty,
    overlong_reward,
    target_length_penalty,
    target_length_reward,
    word_budget_reward,
    word_budget_score,
)


class SpaceTokenizer:
    """A stand-in for a Hugging Face tokenizer: one token per whitespace-separated word."""

    def encode(self, text, add_special_tokens=True):
        return text.split()


def test_dapo_overlong_penalty_by_hand():
    # DAPO: L_max = 20480, L_cache = 4096 -> free up to 16384, then linear to -1 at 20480.
    assert overlong_penalty(16384) == 0.0
    assert overlong_penalty(16385) == pytest.approx(-1 / 4096)
    assert overlong_penalty(18432) == pytest.approx(-0.5)
    assert overlong_penalty(20480) == pytest.approx(-1.0)
    assert overlong_penalty(25000) == -1.0
    assert [overlong_penalty(n, 100, 20) for n in (50, 80, 90, 100, 101)] == [0.0, 0.0, -0.5, -1.0, -1.0]


def test_target_length_and_word_budget_by_hand():
    assert target_length_penalty(1200, 1000) == pytest.approx(-0.06)  # L1: alpha = 3e-4
    assert target_length_penalty(800, 1000) == pytest.approx(-0.06)
    assert target_length_penalty(800, 1000, one_sided=True) == 0.0
    assert target_length_penalty(1100, 1000, alpha=1e-3, one_sided=True) == pytest.approx(-0.1)
    assert [word_budget_score(n, 10) for n in (3, 10, 15, 20, 30)] == [1.0, 1.0, 0.5, 0.0, 0.0]
    assert word_budget_score(12, 10, decay=5) == pytest.approx(0.6)
    assert word_budget_score(11, 10, decay=0) == 0.0


def test_lengths_in_tokens_chars_or_words():
    completions = ["one two three", [{"role": "assistant", "content": "four five"}]]
    assert completion_lengths(completions) == ([13, 9], "chars")
    assert completion_lengths(completions, auto_unit="words") == ([3, 2], "words")
    assert completion_lengths(completions, completion_ids=[[1] * 7, [1] * 4]) == ([7, 4], "tokens")
    assert completion_lengths(completions, tokenizer=SpaceTokenizer()) == ([3, 2], "tokens")
    assert completion_lengths(completions, "tokens", tokenizer=lambda t: len(t.split(" "))) == ([3, 2], "tokens")
    with pytest.raises(ValueError, match="unit='tokens' needs completion_ids"):
        completion_lengths(completions, "tokens")
    with pytest.raises(ValueError, match="completion_ids has 1 rows for 2 completions"):
        completion_lengths(completions, completion_ids=[[1]])


def test_batched_length_rewards_use_trl_completion_ids_when_given():
    reward = overlong_reward(100, 20)
    assert reward.__name__ == "overlong"
    assert reward(None, ["x" * 90]) == [pytest.approx(-0.5)]  # characters
    assert reward(None, ["x" * 90], completion_ids=[[0] * 85]) == [pytest.approx(-0.25)]  # tokens, as TRL passes them
    assert pickle.loads(pickle.dumps(reward)) == reward


def test_target_and_budget_from_a_fixed_value_or_a_column():
    fixed = target_length_reward(10, alpha=0.1)
    assert fixed(None, ["x" * 12, "x" * 10]) == [pytest.approx(-0.2), 0.0]
    per_sample = target_length_reward(column="target_len", alpha=0.1, unit="words")
    assert per_sample(None, ["a b c", "a"], target_len=[1, None]) == [pytest.approx(-0.2), None]
    words = word_budget_reward(column="budget")
    assert words(None, ["a b c", "a b c d e f"], budget=[3, 4]) == [1.0, 0.5]
    with pytest.raises(ValueError, match="sample 1, column 'budget': expected a positive number, got 'four'"):
        words(None, ["a", "b"], budget=[3, "four"])
    with pytest.raises(ValueError, match="give exactly one of budget=<number> or column=<name>"):
        word_budget_reward(5, column="budget")
    with pytest.raises(ValueError, match="unit='bytes' is not one of"):
        overlong_reward(unit="bytes")


def test_hbpo_component_matches_the_spec_values():
    # R(800|1024) = 3.6955, R(1500|1024) = 3.2400, R(300|512) = 3.9231, R(3000|512) = 1.0248; wrong -> 0.
    reward = hbpo_length_reward(answer_reward("exact"))
    assert reward.__name__ == "hbpo"
    lengths = [800, 1500, 300, 3000, 300, 5000]
    budgets = [1024, 1024, 512, 512, 512, 2560]
    completions = ["<answer>4</answer>"] * 4 + ["<answer>5</answer>", "<answer>4</answer>"]
    out = reward(None, completions, answer=["4"] * 6, budget=budgets, completion_ids=[[0] * n for n in lengths])
    assert out == pytest.approx([3.6955, 3.2400, 3.9231, 1.0248, 0.0, 0.0], abs=1e-4)  # last: n > L_max


def test_hbpo_component_not_applicable_and_errors():
    reward = hbpo_length_reward(answer_reward("exact"), budget_column="b")
    ids = [[0] * 10] * 3
    assert reward(None, ["<answer>1</answer>"] * 3, answer=["1", None, "1"], b=[512, 512, None], completion_ids=ids) == [
        pytest.approx(4 * math.cos(math.pi / 16), rel=1e-6),  # f2(512) = 4 cos(pi 512 / 8192)
        None,
        None,
    ]
    nan_correct = hbpo_length_reward(lambda prompts, completions, **kw: [float("nan")], budget_column="b")
    assert nan_correct(None, ["x"], b=[512], completion_ids=[[0]]) == [None]  # NaN from correctness: not applicable
    with pytest.raises(KeyError, match="needs the dataset column 'b'"):
        reward(None, ["x"], answer=["1"])
    with pytest.raises(TypeError, match="correctness must be a batched reward function"):
        hbpo_length_reward("math")
