import math

import numpy as np
import torch

import polyreward as pr
from polyreward.diagnostics import reward_correlation


def test_correlation_matches_numpy_on_complete_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    x[:, 2] = 0.5 * x[:, 0] + rng.normal(size=50) * 0.1
    torch.testing.assert_close(reward_correlation(torch.tensor(x)), torch.tensor(np.corrcoef(x.T)))


def test_correlation_uses_pairwise_complete_rows_and_nan_for_constants():
    x = torch.tensor([[1.0, 2.0, 1.0], [2.0, math.nan, 1.0], [3.0, 7.0, 1.0], [4.0, 9.0, 1.0]])
    corr = reward_correlation(x)
    expected = np.corrcoef([1.0, 3.0, 4.0], [2.0, 7.0, 9.0])[0, 1]  # rows where both apply
    assert abs(float(corr[0, 1]) - expected) < 1e-6
    assert math.isnan(corr[0, 2]) and math.isnan(corr[2, 2])


def test_advantage_share_and_zero_variance_by_hand():
    # group 0: only "a" varies; group 1: both vary
    batch = pr.RewardBatch(rewards=[[1, 0], [0, 0], [1, 1], [0, 0]], names=["a", "b"], group_ids=[0, 0, 1, 1])
    diag = pr.diagnose(batch, "grpo", eps=0.0)
    # grpo parts: group 0 -> a: +-1/sqrt(.5)*.5 = +-0.7071, b: 0; group 1: sum [2, 0], std sqrt2:
    # a: +-0.5/1.4142, b: +-0.5/1.4142.  |a| mass = 2*.7071 + 2*.3536, |b| mass = 2*.3536
    a_mass, b_mass = 2 * 0.70711 + 2 * 0.35355, 2 * 0.35355
    torch.testing.assert_close(diag.advantage_share, torch.tensor([a_mass, b_mass]) / (a_mass + b_mass), atol=1e-4, rtol=0)
    assert diag.zero_variance_groups.tolist() == [0.0, 0.5]
    assert diag.applicable.tolist() == [1.0, 1.0]


def test_collapse_counts_per_group():
    # group 0: 4 distinct vectors, (1,0) and (0,1) tie under equal weights -> 3 advantage values
    rewards = [[1, 1], [1, 0], [0, 1], [0, 0], [1, 1], [1, 1]]
    batch = pr.RewardBatch(rewards=rewards, names=["a", "b"], group_ids=[0, 0, 0, 0, 1, 1])
    diag = pr.diagnose(batch, "grpo")
    assert diag.distinct_reward_vectors == (4 + 1) / 2
    assert diag.distinct_advantages == (3 + 1) / 2
    assert diag.collapsed_groups == 0.5
    weighted = pr.diagnose(batch.with_weights(b=0.5), "grpo")  # unequal weights break the tie
    assert weighted.collapsed_groups == 0.0


def test_share_unavailable_for_nonlinear_estimators_with_several_rewards():
    batch = pr.RewardBatch(rewards=[[1.0, 0.5], [0.0, 0.2]], names=["a", "b"], budgets=[512, 512])
    assert pr.diagnose(batch, "hbpo").advantage_share is None
    assert "n/a" in pr.diagnose(batch, "hbpo").table()


def test_as_dict_uses_reward_names():
    batch = pr.RewardBatch(rewards=[[1.0, 0.5], [0.0, 0.2]], names=["correct", "length"])
    flat = pr.diagnose(batch, "gdpo").as_dict()
    assert flat["diag/correct/mean"] == 0.5 and "diag/length/adv_share" in flat
    assert "diag/gdpo/zero_variance_groups" in flat


def test_turn_level_result_skips_collapse_counts():
    batch = pr.RewardBatch(rewards=[[0.0], [1.0]], names=["a"], turn_rewards=[[1.0, 0.0], [0.5, None]])
    diag = pr.diagnose(batch, "dual_level")
    assert diag.distinct_advantages is None and "distinct" not in diag.table()
