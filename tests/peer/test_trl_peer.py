"""Peer check: polyreward's grpo / gdpo equal TRL 1.16's own GRPOTrainer advantages on the same rewards."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import polyreward as pr
from polyreward.advantages import compute

from .trl_harness import trl_advantages

# Each: rewards [N][K] (None = not applicable), group size, weights.
CASES = [
    ([[1, 1], [1, 0], [0, 1], [0, 0], [1, 1], [1, 1], [0, 1], [1, 1]], 4, [1.0, 1.0]),
    ([[1, 3], [0, -3], [1, 1.5], [0, 0], [1, 3], [1, 3], [1, 3], [1, 3]], 4, [1.0, 0.5]),
    ([[0.2, None, 1], [0.9, 1, 0], [0.5, 0, None], [None, None, None], [1, 1, 1], [0, 1, 0]], 3, [1.0, 2.0, 0.3]),
    ([[5.0], [1.0], [2.0], [2.0]], 2, [1.0]),
]


def _ours(estimator, rewards, group_size, weights, **params):
    batch = pr.RewardBatch.from_reward_lists(
        list(zip(*rewards, strict=True)),
        names=[f"r{k}" for k in range(len(weights))],
        group_size=group_size,
        weights=weights,
    )
    return compute(estimator, batch, **params).advantages


@pytest.mark.parametrize(("rewards", "group_size", "weights"), CASES)
@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_grpo_equals_trl_sum_then_normalize(rewards, group_size, weights, scale):
    theirs = trl_advantages(rewards, group_size, weights, "sum_then_normalize", scale_rewards=scale)
    torch.testing.assert_close(_ours("grpo", rewards, group_size, weights, scale=scale), theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("rewards", "group_size", "weights"), CASES)
def test_gdpo_equals_trl_normalize_then_sum(rewards, group_size, weights):
    theirs = trl_advantages(rewards, group_size, weights, "normalize_then_sum")
    torch.testing.assert_close(_ours("gdpo", rewards, group_size, weights), theirs, atol=1e-3, rtol=1e-3)


reward_value = st.one_of(st.integers(-3, 3).map(float), st.none())


@st.composite
def reward_matrices(draw):
    k = draw(st.integers(1, 3))
    group_size = draw(st.integers(2, 4))
    groups = draw(st.integers(1, 3))
    rows = draw(
        st.lists(st.lists(reward_value, min_size=k, max_size=k), min_size=groups * group_size, max_size=groups * group_size)
    )
    weights = draw(st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=k, max_size=k))
    return rows, group_size, weights


@settings(max_examples=25, deadline=None)
@given(reward_matrices())
def test_grpo_and_gdpo_match_trl_on_random_matrices(case):
    rewards, group_size, weights = case
    theirs = trl_advantages(rewards, group_size, weights, "sum_then_normalize")
    torch.testing.assert_close(_ours("grpo", rewards, group_size, weights), theirs, atol=1e-4, rtol=1e-4)
    theirs = trl_advantages(rewards, group_size, weights, "normalize_then_sum")
    ours = _ours("gdpo", rewards, group_size, weights)
    # With (near) zero batch spread TRL divides float32 rounding noise by 1e-4; compare only real signal there.
    if float(theirs.abs().max()) > 1e-2:
        torch.testing.assert_close(ours, theirs, atol=1e-3, rtol=1e-3)
    else:
        assert float(ours.abs().max()) < 1e-2
