"""Smoke tests for the TRL peer harness: it runs TRL's real GRPO code and returns advantages in our row order."""

import pytest
import torch

from .trl_harness import trl_advantages

REWARDS = [[1, 1], [1, 0], [0, 1], [0, 0], [1, 1], [1, 1], [0, 1], [1, 1]]  # 2 prompts x G=4 x K=2


def test_runs_and_returns_one_advantage_per_row():
    rewards = torch.rand(8, 2).tolist()
    adv = trl_advantages(rewards, group_size=4, weights=[1.0, 0.5], aggregation="sum_then_normalize")
    assert isinstance(adv, torch.Tensor)
    assert adv.shape == (8,)
    assert torch.isfinite(adv).all()


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        ("sum_then_normalize", [1.2246, 0, 0, -1.2246, 0.4999, 0.4999, -1.4997, 0.4999]),
        ("normalize_then_sum", [1.5274, 0, 0, -1.5274, 0.4409, 0.4409, -1.3227, 0.4409]),
    ],
)
def test_matches_hand_computation(aggregation, expected):
    adv = trl_advantages(REWARDS, group_size=4, weights=[1.0, 1.0], aggregation=aggregation, scale_rewards="group")
    torch.testing.assert_close(adv, torch.tensor(expected), atol=1e-3, rtol=0)


@pytest.mark.parametrize("aggregation", ["sum_then_normalize", "normalize_then_sum"])
def test_row_order_follows_input_rows(aggregation):
    # Distinct rows, so a wrong row mapping would show: permuting rows within and across groups permutes advantages.
    rewards = [[0.1, 0.9], [0.4, 0.2], [0.8, 0.5], [0.3, 0.0], [0.7, 0.6], [0.2, 0.1], [0.9, 0.3], [0.5, 0.8]]
    perm = [6, 4, 7, 5, 2, 0, 3, 1]  # swap the two groups and shuffle inside each
    base = trl_advantages(rewards, 4, [1.0, 2.0], aggregation)
    permuted = trl_advantages([rewards[i] for i in perm], 4, [1.0, 2.0], aggregation)
    torch.testing.assert_close(permuted, base[perm], atol=1e-5, rtol=1e-5)


def test_repeat_sampler_keeps_groups_consecutive():
    # The harness lays rows out as TRL's RepeatSampler does: each prompt index repeated G times in a row.
    from trl.trainer.utils import RepeatSampler

    order = list(RepeatSampler(list(range(5)), mini_repeat_count=4, batch_size=5, shuffle=True, seed=1))
    groups = [order[i : i + 4] for i in range(0, len(order), 4)]
    assert all(len(set(g)) == 1 for g in groups)
    assert sorted(g[0] for g in groups) == list(range(5))
