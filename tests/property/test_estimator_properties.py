"""Properties every group estimator must keep (hypothesis)."""

import dataclasses

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from polyreward.advantages import compute
from polyreward.groups import batch_normalize_parts

from .strategies import group_sums, reward_batches

SETTINGS = settings(max_examples=60, deadline=None)
# (estimator, params) for every sample-level estimator on plain reward batches
SAMPLE_ESTIMATORS = [
    ("grpo", {}),
    ("grpo", {"scale": "batch"}),
    ("grpo", {"scale": "none"}),
    ("dr_grpo", {}),
    ("rloo", {}),
    ("reinforce_pp", {}),
    ("reinforce_pp", {"baseline": "group"}),
    ("gdpo", {}),
    ("gdpo", {"batch_norm": None}),
    ("directional", {"direction": [1.0, 2.0, 0.5]}),
]
GROUP_ZERO_SUM = [
    ("grpo", {}),
    ("grpo", {"scale": "batch"}),
    ("dr_grpo", {}),
    ("rloo", {}),
    ("gdpo", {"batch_norm": None}),
    ("directional", {"direction": [1.0, 2.0, 0.5]}),
]


def _batch_for(name, params, batch):
    if name == "directional":  # the direction needs one entry per reward
        params = {"direction": params["direction"][: batch.num_rewards]}
    return params


def _close(a, b, tol=1e-6):
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


@pytest.mark.parametrize(("name", "params"), GROUP_ZERO_SUM)
@SETTINGS
@given(batch=reward_batches())
def test_group_advantages_sum_to_zero(name, params, batch):
    adv = compute(name, batch, **_batch_for(name, params, batch)).advantages
    _close(group_sums(adv, batch), torch.zeros(batch.num_groups, dtype=adv.dtype), 1e-6)


@pytest.mark.parametrize(("name", "params"), [("gdpo", {}), ("reinforce_pp", {}), ("reinforce_pp", {"baseline": "group"})])
@SETTINGS
@given(batch=reward_batches())
def test_batch_normalized_advantages_sum_to_zero_over_the_batch(name, params, batch):
    adv = compute(name, batch, **params).advantages
    assert abs(float(adv.sum())) < 1e-6


@SETTINGS
@given(batch=reward_batches(min_k=2))
def test_hdpo_channels_sum_to_zero_per_group(batch):
    result = compute("hdpo", batch)
    zeros = torch.zeros(batch.num_groups, dtype=torch.float64)
    _close(group_sums(result.channels["primary"], batch), zeros)
    _close(group_sums(result.channels["conditional"], batch), zeros)


@pytest.mark.parametrize(("name", "params"), SAMPLE_ESTIMATORS)
@SETTINGS
@given(batch=reward_batches(), data=st.data())
def test_permuting_rows_permutes_advantages(name, params, batch, data):
    params = _batch_for(name, params, batch)
    perm = torch.tensor(data.draw(st.permutations(range(batch.num_samples))))
    permuted = dataclasses.replace(batch, rewards=batch.rewards[perm], group_ids=batch.group_ids[perm])
    _close(compute(name, permuted, **params).advantages, compute(name, batch, **params).advantages[perm])


@pytest.mark.parametrize(("name", "params"), SAMPLE_ESTIMATORS)
@SETTINGS
@given(batch=reward_batches())
def test_per_component_parts_add_up_to_advantages(name, params, batch):
    result = compute(name, batch, **_batch_for(name, params, batch))
    _close(result.per_component.sum(-1), result.advantages)


affine = st.tuples(st.sampled_from([0.5, 2.0, 10.0]), st.sampled_from([-5.0, 0.0, 3.0]))


@pytest.mark.parametrize(
    ("name", "params", "scales"),
    [
        ("grpo", {}, True),
        ("grpo", {"scale": "batch"}, True),
        ("dr_grpo", {}, False),
        ("rloo", {}, False),
        ("reinforce_pp", {"baseline": "group"}, True),
    ],
)
@SETTINGS
@given(batch=reward_batches(max_k=1, nan=False), ab=affine)
def test_affine_reward_change(name, params, scales, batch, ab):
    """Normalizing methods ignore a*r + b (a > 0); mean-only methods ignore b and scale with a."""
    a, b = ab
    moved = dataclasses.replace(batch, rewards=a * batch.rewards + b)
    expected = compute(name, batch, **params).advantages * (1.0 if scales else a)
    _close(compute(name, moved, **params).advantages, expected, 2e-3)


@SETTINGS
@given(batch=reward_batches(nan=False), data=st.data())
def test_gdpo_invariant_to_a_separate_affine_change_of_each_reward(batch, data):
    a = torch.tensor(
        data.draw(st.lists(st.sampled_from([0.5, 2.0, 10.0]), min_size=batch.num_rewards, max_size=batch.num_rewards)),
        dtype=torch.float64,
    )
    b = torch.tensor(
        data.draw(st.lists(st.sampled_from([-5.0, 0.0, 3.0]), min_size=batch.num_rewards, max_size=batch.num_rewards)),
        dtype=torch.float64,
    )
    moved = dataclasses.replace(batch, rewards=a * batch.rewards + b)
    # Where the weighted sum cancels (std of pre ~ 0), GDPO's batch step divides eps-sized residues by
    # std + eps, as TRL does; invariance is only promised where there is signal to normalize.
    pre = compute("gdpo", batch, batch_norm=None).advantages
    assume(len(pre) > 1 and float(pre.std()) > 0.1)
    _close(compute("gdpo", moved).advantages, compute("gdpo", batch).advantages, 2e-3)


@SETTINGS
@given(batch=reward_batches(max_k=1))
def test_k1_multi_reward_estimators_reduce_to_single_reward_form(batch):
    eps = 1e-12  # eps enters each method at a different scale; take it out of the comparison
    grpo = compute("grpo", batch, eps=eps).advantages
    _close(compute("gdpo", batch, batch_norm=None, eps=eps).advantages, grpo * batch.weights[0])  # GRPO ignores w > 0
    _close(compute("directional", batch, direction=[2.0], eps=eps).advantages, grpo)
    # gdpo with batch normalization = grpo followed by batch normalization over the scorable rows
    scorable = ~torch.isnan(batch.rewards[:, 0])
    expected = batch_normalize_parts(grpo[:, None], eps, include=scorable)[:, 0]
    _close(compute("gdpo", batch, eps=eps).advantages, expected, 1e-5)


@SETTINGS
@given(batch=reward_batches(max_k=1, nan=False))
def test_hdpo_without_qualifying_samples_is_grpo(batch):
    never = batch.with_reward("tool", torch.zeros(batch.num_samples, dtype=torch.float64))
    result = compute("hdpo", never, eps=1e-4)
    _close(result.advantages, compute("grpo", batch).advantages)


@pytest.mark.parametrize(("name", "params"), SAMPLE_ESTIMATORS[:-1])
@SETTINGS
@given(batch=reward_batches())
def test_all_nan_component_equals_dropping_it(name, params, batch):
    padded = batch.with_reward("missing", [None] * batch.num_samples, weight=2.0)
    with_nan = compute(name, padded, **params)
    _close(with_nan.advantages, compute(name, batch, **params).advantages)
    assert torch.all(with_nan.per_component[:, -1] == 0)


@SETTINGS
@given(batch=reward_batches(min_k=2))
def test_hdpo_all_nan_primary_component_equals_dropping_it(batch):
    padded = batch.select(*batch.names[:-1]).with_reward("missing", [None] * batch.num_samples)
    padded = padded.with_reward(batch.names[-1], batch.rewards[:, -1])
    _close(compute("hdpo", padded).advantages, compute("hdpo", batch).advantages)
