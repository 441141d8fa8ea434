import math

import pytest
import torch

from polyreward.rewards.selection import (
    balance_score,
    balance_scores,
    repeated_samples,
    reward_variance,
    select_by_reward_variance,
)

NAN = math.nan


def test_balance_score_spec_cases():
    # (n' = 4, n = 5) -> (4/8)(4/5) = 0.4 ; (10, 12) -> 10/12 ; (0, 3) -> 0
    assert balance_scores([4, 10, 0], [5, 12, 3]) == pytest.approx([0.4, 0.8333, 0.0], abs=1e-4)
    assert balance_score([4, 10, 0], [5, 12, 3]) == pytest.approx((0.4 + 10 / 12 + 0.0) / 3)
    assert balance_scores([8], [10]) == [0.8]  # exactly n* correct: full exploration credit
    assert balance_scores(torch.tensor([2]), torch.tensor([2]), n_star=4) == [0.5]


def test_balance_score_leaves_out_queries_that_kept_nothing():
    assert math.isnan(balance_scores([0], [0])[0])
    assert balance_score([4, 0], [5, 0]) == pytest.approx(0.4)
    assert balance_score([0, 0], [0, 0]) == 0.0


def test_balance_score_rejects_impossible_counts():
    with pytest.raises(ValueError, match="query 1 has n_correct=3 > n_kept=2"):
        balance_score([1, 3], [1, 2])
    with pytest.raises(ValueError, match=r"n_kept\[0\] must be a count"):
        balance_score([1], [1.5])
    with pytest.raises(ValueError, match="n_correct has 2 queries, n_kept has 1"):
        balance_score([1, 1], [2])


ROWS = [[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [NAN, 1, 0, NAN]]


def test_reward_variance_is_unbiased_over_finite_entries():
    # [1,0,0,0]: p = 1/4 -> p(1-p) R/(R-1) = 0.25 ; [1,1,0,0]: 1/3 ; [1,0] over two finite runs: 0.5
    var = reward_variance(ROWS)
    assert var.tolist() == pytest.approx([0.0, 0.0, 0.25, 1 / 3, 0.5])
    loop = [torch.tensor([v for v in row if v == v], dtype=torch.float64).var().item() for row in ROWS]
    assert var.tolist() == pytest.approx(loop)
    assert math.isnan(reward_variance([[1.0, NAN]])[0].item())


def test_select_by_reward_variance():
    assert select_by_reward_variance(ROWS).tolist() == [False, False, True, True, True]  # drop constant rows
    assert select_by_reward_variance(ROWS, min_var=0.3).tolist() == [False, False, False, True, True]
    assert select_by_reward_variance(ROWS, top_frac=0.4).tolist() == [False, False, False, True, True]  # ceil(2)
    assert select_by_reward_variance(ROWS, min_var=0.2, top_frac=0.2).tolist() == [False, False, False, False, True]
    ties = select_by_reward_variance([[0, 1], [1, 0], [0, 0]], top_frac=0.3)  # ceil(0.9) = 1 row
    assert ties.tolist() == [True, False, False]  # equal variance: lower index first
    assert select_by_reward_variance([[1.0, NAN]], top_frac=1.0).tolist() == [False]  # unknown variance never kept
    assert select_by_reward_variance(torch.zeros(0, 4)).tolist() == []


def test_select_by_reward_variance_validates():
    with pytest.raises(ValueError, match="top_frac must be in \\(0, 1\\]"):
        select_by_reward_variance(ROWS, top_frac=0.0)
    with pytest.raises(ValueError, match="min_var must be a finite number >= 0"):
        select_by_reward_variance(ROWS, min_var=-1)
    with pytest.raises(ValueError, match="rewards must be \\[M, R\\]"):
        select_by_reward_variance([1.0, 0.0])


def test_repeated_samples_marks_later_copies_within_each_query():
    texts = ["a", "b", "a", "a", "a", "c", "a", "c"]  # Q = 2 queries of S = 4: query 1's first "a" is new
    assert repeated_samples(texts, 4).tolist() == [[False, False, True, True], [False, False, True, True]]
    assert repeated_samples([(1, 2), (1, 2), (2, 1)], 3).tolist() == [[False, True, False]]  # token tuples
    with pytest.raises(ValueError, match="do not split into queries of 4"):
        repeated_samples(texts[:6], 4)
