"""Reward-model losses on hand-computed numbers (values worked out by hand, to 6-7 digits)."""

from __future__ import annotations

import math

import pytest
import torch

from polyreward.rm.losses import (
    adaptive_margin,
    bt_loss,
    denoise_targets,
    directional_rewards,
    gaussian_kl,
    pair_accuracy,
    preference_loss,
    preference_strength,
    simcse_loss,
    vpl_elbo,
)

T = torch.tensor


def test_bt_loss_with_margin():
    # -log sigma(2 - 0.5) = ln(1 + e^-1.5) = ln(1.2231302); -log sigma(-1 - 0.5) = ln(1 + e^1.5) = ln(5.4816891)
    assert bt_loss(T([2.0, -1.0]), 0.5).tolist() == pytest.approx([0.2014133, 1.7014133], abs=1e-6)


def test_preference_loss_plain_is_bt_mean():
    # -log sigma(2) = 0.1269280, -log sigma(-1) = 1.3132617
    assert float(preference_loss(T([[2.0], [-1.0]]))) == pytest.approx((0.1269280 + 1.3132617) / 2, abs=1e-6)


def test_label_smoothing_matches_eq5():
    # -[0.9 log sigma(1) + 0.1 log(1 - sigma(1))] = 0.9 * 0.3132617 + 0.1 * 1.3132617
    assert float(preference_loss(T([1.0]), target=T([0.9]))) == pytest.approx(0.4132617, abs=1e-6)


def test_flipped_pair_is_swapped_pair_with_abs_margin():
    # t = 0, delta = r_c - r_r = 0.4, margin mu = -0.6: the swapped pair (r_r - r_c = -0.4) with margin 0.6,
    # -log sigma(-0.4 - 0.6) = -log sigma(-1) = 1.3132617
    assert float(preference_loss(T([0.4]), target=T([0.0]), margin=T([-0.6]))) == pytest.approx(1.3132617, abs=1e-6)


def test_masked_entries_do_not_count():
    loss = preference_loss(T([[1.0, -50.0]]), mask=T([[True, False]]))
    assert float(loss) == pytest.approx(0.3132617, abs=1e-6)


def test_preference_strength_population_std_as_in_eq4():
    diffs = T([0.5, 1.0, -0.3, 0.8])[:, None]  # M = 4 members, one pair
    mu, sigma = preference_strength(diffs)
    # squared deviations 0, 0.25, 0.64, 0.09 -> 0.98; / 4 -> sqrt 0.245; / 3 -> sqrt 0.32667
    assert float(mu) == pytest.approx(0.5, abs=1e-7)
    assert float(sigma) == pytest.approx(0.4949747, abs=1e-6)
    assert float(preference_strength(diffs, unbiased=True)[1]) == pytest.approx(0.5715476, abs=1e-6)


def test_denoise_rules_on_a_constructed_ensemble():
    diffs = T([[0.9, -0.3, 0.0, -1.2], [0.7, -0.1, 0.1, -0.8]])  # 2 members, 4 pairs
    mu, _ = preference_strength(diffs)  # [0.8, -0.2, 0.05, -1.0]
    labels = T([1.0, 1.0, 1.0, 0.0])  # the last pair says "rejected is better", and the ensemble agrees
    assert denoise_targets(mu, labels, "none").tolist() == [1.0, 1.0, 1.0, 0.0]
    assert denoise_targets(mu, labels, "flip").tolist() == [1.0, 0.0, 1.0, 0.0]
    assert denoise_targets(mu, labels, "smooth", alpha=0.25).tolist() == [1.0, 0.75, 1.0, 0.0]
    assert denoise_targets(T([-0.5]), T([0.0]), "smooth", alpha=0.25).tolist() == [0.0]  # agrees: untouched
    assert denoise_targets(T([0.5]), T([0.0]), "smooth", alpha=0.25).tolist() == [0.25]
    assert adaptive_margin(mu, 2.0).tolist() == pytest.approx([1.6, -0.4, 0.1, -2.0])
    with pytest.raises(ValueError, match="rule"):
        denoise_targets(mu, labels, "drop")  # type: ignore[arg-type]


def test_simcse_on_orthonormal_views():
    eye = torch.eye(2)
    # cos sims [[1, 0], [0, 1]], tau = 1: -log(e / (e + 1)) = ln(1 + e^-1)
    assert float(simcse_loss(eye, eye, temperature=1.0)) == pytest.approx(0.3132617, abs=1e-6)
    # swapped positives: -log(1 / (1 + e)) = ln(1 + e) = 1.3132617
    assert float(simcse_loss(eye, eye.flip(0), temperature=1.0)) == pytest.approx(1.3132617, abs=1e-6)


def test_pair_accuracy_per_objective_with_mask_and_ties():
    delta = T([[1.0, -1.0], [-2.0, 0.0], [3.0, 2.0]])
    target = T([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    mask = T([[True, True], [True, False], [False, True]])
    assert pair_accuracy(delta, target, mask).tolist() == [1.0, 0.5]
    assert pair_accuracy(T([[0.0]])).tolist() == [0.5]
    assert math.isnan(float(pair_accuracy(T([[1.0]]), mask=T([[False]]))[0]))


def test_directional_rewards_dpa_example():
    theta = math.radians(30)
    r = T([[0.8, 0.2], [0.6, 0.9], [0.9, -0.5]])
    scores = directional_rewards(r, T([math.cos(theta), math.sin(theta)]))
    assert scores.tolist() == pytest.approx([0.7928, 0.9696, 0.5294], abs=1e-4)
    assert directional_rewards(r, T([2.0, 0.0])).tolist() == pytest.approx([0.8, 0.6, 0.9])  # normalized
    with pytest.raises(ValueError, match="non-zero"):
        directional_rewards(r, T([0.0, 0.0]))


def test_vpl_elbo_and_gaussian_kl():
    # log sigma(1.2 - 0.4) = -ln(1 + e^-0.8) = -0.3711007; ELBO = -0.3711007 - 0.1 * 0.5
    assert vpl_elbo(T([[1.2 - 0.4]]), T([0.5]), beta=0.1).tolist() == pytest.approx([-0.4211007], abs=1e-6)
    # 0.5 * [(1 + 1 - 1 - 0) + (0 + 2 - 1 - ln 2)] = 0.5 * (1 + 0.3068528)
    assert float(gaussian_kl(T([1.0, 0.0]), T([0.0, math.log(2.0)]))) == pytest.approx(0.6534264, abs=1e-6)
