"""The documented behaviour for singleton groups, zero-variance groups and NaN rewards."""

import math

import numpy as np
import pytest
import torch

import polyreward as pr
from polyreward.advantages import compute

GROUP_ESTIMATORS = ["grpo", "dr_grpo", "rloo", "gdpo", "reinforce_pp"]


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo"])
def test_singleton_group_gets_zero(name):
    batch = pr.RewardBatch(rewards=[[5.0], [1.0], [3.0]], names=["a"], group_ids=[0, 1, 1])
    adv = compute(name, batch).advantages
    assert adv[0] == 0.0 and adv[1] != 0.0


def test_singleton_group_in_gdpo_contributes_nothing_before_batch_norm():
    batch = pr.RewardBatch(rewards=[[5.0, 1.0], [1.0, 0.0], [3.0, 1.0]], names=["a", "b"], group_ids=[0, 1, 1])
    assert compute("gdpo", batch, batch_norm=None).advantages[0] == 0.0


def test_a_reward_with_one_applicable_sample_in_a_group_contributes_zero_there():
    batch = pr.RewardBatch(rewards=[[1.0, 0.3], [0.0, None]], names=["correct", "length"])
    normalized = compute("gdpo", batch, batch_norm=None).extras["normalized"]
    assert normalized[:, 1].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "gdpo"])
def test_zero_variance_group_gets_zero_and_is_counted(name):
    batch = pr.RewardBatch(rewards=[[1.0], [1.0], [1.0], [0.0], [1.0]], names=["a"], group_ids=[0, 0, 0, 1, 1])
    result = compute(name, batch, **({"batch_norm": None} if name == "gdpo" else {}))
    assert result.advantages[:3].tolist() == [0.0, 0.0, 0.0]
    assert result.metrics["zero_variance_groups"] == 0.5


def test_all_nan_row_gets_zero_and_is_left_out_of_the_baseline():
    batch = pr.RewardBatch(rewards=[[None, None], [1.0, 0.0], [0.0, 0.0]], names=["a", "b"])
    adv = compute("grpo", batch).advantages
    assert adv[0] == 0.0
    # the two scorable rows alone: scores [1, 0], mean 0.5, std sqrt(0.5)
    torch.testing.assert_close(adv[1:], torch.tensor([0.5, -0.5]) / (math.sqrt(0.5) + 1e-4))


def test_partly_nan_row_counts_missing_reward_as_zero_in_summing_estimators():
    """Sum-then-normalize (TRL's convention): NaN adds nothing to the weighted sum."""
    batch = pr.RewardBatch(rewards=[[1.0, None], [1.0, 1.0]], names=["a", "b"])
    torch.testing.assert_close(compute("grpo", batch).advantages, torch.tensor([-0.5, 0.5]) / (math.sqrt(0.5) + 1e-4))


def test_float64_rewards_stay_float64():
    batch = pr.RewardBatch(rewards=np.array([[1.0], [0.0]]), names=["a"])
    for name in GROUP_ESTIMATORS:
        assert compute(name, batch).advantages.dtype == torch.float64


def test_hbpo_leaves_unscorable_rows_out():
    batch = pr.RewardBatch(rewards=[[None], [1.0], [2.0]], names=["budget"], budgets=[512, 512, 512])
    result = compute("hbpo", batch)
    assert result.advantages[0] == 0.0
    # scored rows [1, 2]: inter = -+0.7071; intra = mean(1, 2) - 4 cos(pi * 512 / 8192)
    intra = 1.5 - 4 * math.cos(math.pi * 512 / 8192)
    torch.testing.assert_close(result.advantages[1:], torch.tensor([-0.70711, 0.70711]) + intra, atol=1e-4, rtol=0)


def test_gdpo_counts_a_group_as_flat_only_when_every_reward_is_flat():
    varied = pr.RewardBatch(rewards=[[2, 0, 0], [0, 1, 1], [1, 0, 1]], names=["a", "b", "c"])
    assert compute("gdpo", varied).metrics["zero_variance_groups"] == 0.0
    assert compute("grpo", varied).metrics["zero_variance_groups"] == 1.0  # the sums are all 2
    flat = pr.RewardBatch(rewards=[[1, 0], [1, 0]], names=["a", "b"])
    assert compute("gdpo", flat).metrics["zero_variance_groups"] == 1.0


def test_from_turns_sums_each_samples_turns():
    batch = pr.RewardBatch.from_turns([[1.0, 0.5], [0.25, None]], group_ids=[0, 0])
    assert batch.names == ("turns",) and batch.rewards[:, 0].tolist() == [1.5, 0.25]
    assert batch.turn_mask.tolist() == [[True, True], [True, False]]
