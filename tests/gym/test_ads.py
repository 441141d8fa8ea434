"""Automatic Discount Scheduling: spec numbers, LIS against the released O(n²) loop, vectorized prefix
matching against the per-prefix argmin, and the scheduler on hand-made and synthetic trajectories."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polyreward.gym.ads import (
    ADSScheduler,
    ads_gamma,
    advance_progress,
    cost_matrix,
    lis_length,
    match_positions,
    prefix_lis_scores,
    prefix_match_positions,
    reference_scores,
)


def _lis_quadratic(a: list[int]) -> int:
    """IL_ADS ``longest_increasing_subsequence`` (O(n²) DP, strict), except 0 for the empty sequence."""
    dp = [1] * len(a)
    for i in range(len(a)):
        for j in range(i):
            if a[j] < a[i]:
                dp[i] = max(dp[i], dp[j] + 1)
    return max(dp, default=0)


def test_spec_gammas():
    assert ads_gamma(0.2, 10) == pytest.approx(0.851340, abs=1e-6)
    assert ads_gamma(0.2, 50) == pytest.approx(0.968324, abs=1e-6)
    assert ads_gamma(0.2, 10) ** 10 == pytest.approx(0.2)
    with pytest.raises(ValueError, match="alpha"):
        ads_gamma(1.0, 10)


@pytest.mark.parametrize(("seq", "expected"), [([0, 2, 1, 3, 5, 4], 4), ([3, 3, 3], 1), ([0, 0, 1, 1, 2], 3), ([], 0)])
def test_spec_lis(seq, expected):
    assert lis_length(seq) == expected
    assert lis_length(torch.tensor(seq, dtype=torch.long)) == expected


def test_lis_matches_quadratic_loop():
    rng = np.random.default_rng(0)
    for _ in range(200):
        seq = rng.integers(0, 8, size=int(rng.integers(1, 25))).tolist()
        assert lis_length(seq) == _lis_quadratic(seq), seq


def test_cost_matrix_by_hand():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    torch.testing.assert_close(cost_matrix(x, y), torch.tensor([[5.0, 1.0], [math.sqrt(20.0), 0.0]]))
    # cosine distance: [1, 0] vs [3, 4] -> 1 - 3/5 = 0.4, vs [1, 0] -> 0
    torch.testing.assert_close(cost_matrix(x[1:], y, "cosine"), torch.tensor([[0.4, 0.0]]))


def test_prefix_positions_match_the_per_prefix_argmin_with_ties():
    gen = torch.Generator().manual_seed(0)
    for rows, cols in [(9, 9), (6, 11), (12, 5)]:
        cost = torch.randint(0, 4, (rows, cols), generator=gen).float()  # many ties
        table = prefix_match_positions(cost)
        for k in range(1, min(rows, cols) + 1):
            torch.testing.assert_close(table[:k, k - 1], match_positions(cost, k))
        expected = [_lis_quadratic(match_positions(cost, k).tolist()) for k in range(1, min(rows, cols) + 1)]
        np.testing.assert_array_equal(prefix_lis_scores(cost), expected)


def test_reference_scores_by_hand():
    # A = 0..5 and B = A + 0.1 on a line: every frame's nearest frame is its own index -> LIS = k.
    a = torch.arange(6.0)[:, None]
    np.testing.assert_array_equal(reference_scores([a, a + 0.1]), [1, 2, 3, 4, 5, 6])
    # A reversed demo C_j = 5 - j: A's first k frames all lie below C's first k frames, so positions run
    # non-increasing (k = 3: [2, 2, 2]; k = 6: [5, 4, 3, 2, 1, 0]) and every prefix LIS is 1, both ways.
    c = a.flip(0)
    np.testing.assert_array_equal(prefix_lis_scores(cost_matrix(a, c)), [1] * 6)
    np.testing.assert_array_equal(reference_scores([a, c]), [1] * 6)
    with pytest.raises(ValueError, match="at least 2"):
        reference_scores([a])


def test_scheduler_by_hand():
    """Demos A = 0..5 and A + 0.1 (ref = [1..6]); horizon 6, progress_start 0.5 -> k = 3.

    Agent frames [0, 1, 2, 0, 0, 0]: positions under the first k demo frames are
    k=3: [0, 1, 2] LIS 3 >= int(0.9*3) = 2 -> k = 4;
    k=4: [0, 1, 2, 0] LIS 3 >= int(3.6) = 3 -> k = 5;
    k=5: [0, 1, 2, 0, 0] LIS 3 < int(4.5) = 4 -> stop at k = 5.
    γ = 0.2^(1/5) = exp(-1.6094379 / 5) = 0.7247797.
    """
    a = torch.arange(6.0)[:, None]
    scheduler = ADSScheduler(6, alpha=0.2, threshold=0.9, progress_start=0.5, max_delta=5, demos=[a, a + 0.1])
    assert scheduler.progress == 3
    gamma = scheduler.update([torch.tensor([0.0, 1, 2, 0, 0, 0])[:, None]])
    assert scheduler.progress == 5
    assert gamma == pytest.approx(0.7247797, abs=1e-6)
    assert scheduler.metrics == {"ads/progress": 5.0, "ads/gamma": gamma, "ads/match_score": 3.0, "ads/ref_score": 5.0}
    # an expert-like trajectory then reaches the horizon and stays there
    scheduler.update([a + 0.05])
    assert scheduler.progress == 6
    scheduler.update([a + 0.05])
    assert scheduler.progress == 6


def test_advance_progress_respects_max_delta():
    a = torch.arange(10.0)[:, None]
    ref = reference_scores([a, a + 0.1])
    costs = [cost_matrix(a, a)]
    assert advance_progress(2, costs, ref, horizon=10, max_delta=3)[0] == 5
    assert advance_progress(2, costs, ref, horizon=4, max_delta=3)[0] == 4


def _synthetic_demos(count: int, length: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(length).float() / length
    return [torch.stack([t, t**2], 1) + 0.01 * torch.randn(length, 2, generator=gen) for _ in range(count)]


def test_scheduler_advances_on_demos_and_stops_on_random_trajectories():
    demos = _synthetic_demos(3, 40)
    imitator = ADSScheduler(40, progress_start=0.25, demos=demos)  # k = 10, max_delta = 5
    assert imitator.progress == 10
    assert imitator.gamma == pytest.approx(0.851340, abs=1e-6)
    progress = [imitator.progress]
    for _ in range(7):
        imitator.update([demos[0], demos[1]])
        progress.append(imitator.progress)
    assert progress == [10, 15, 20, 25, 30, 35, 40, 40]
    assert imitator.gamma == pytest.approx(0.2 ** (1 / 40))

    random = ADSScheduler(40, progress_start=0.25, demos=demos)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        random.update([torch.rand(40, 2, generator=gen) for _ in range(4)])
        assert random.progress == 10
    assert random.metrics["ads/match_score"] < int(0.9 * random.metrics["ads/ref_score"])


def test_scheduler_errors_name_the_problem():
    a = torch.arange(6.0)[:, None]
    with pytest.raises(ValueError, match="shorter than horizon"):
        ADSScheduler(8, demos=[a, a + 0.1])
    with pytest.raises(ValueError, match="progress_start"):
        ADSScheduler(6, progress_start=0.1, demos=[a, a + 0.1])
    with pytest.raises(ValueError, match="metric"):
        cost_matrix(a, a, "manhattan")  # type: ignore[arg-type]
