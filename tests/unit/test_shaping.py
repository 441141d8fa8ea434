import torch

from polyreward.shaping import combine_bonuses, potential_shaping


def test_potential_shaping_spec_cases():
    phi = torch.tensor([0.0, 0.3, 0.6, 1.0])
    rewards = torch.tensor([0.0, 0.0, 1.0])
    terminated = torch.tensor([False, False, True])
    keep = potential_shaping(rewards, phi, terminated, 0.99, "keep") - rewards
    torch.testing.assert_close(keep, torch.tensor([0.297, 0.294, 0.39]))
    discounted = (keep * 0.99 ** torch.arange(3)).sum()
    torch.testing.assert_close(discounted, torch.tensor(0.99**3 * 1.0 - 0.0))  # telescopes
    zero = potential_shaping(rewards, phi, terminated, 0.99, "zero")
    torch.testing.assert_close(zero, torch.tensor([0.297, 0.294, 0.4]))


def test_shaping_on_a_cycle_sums_to_zero_undiscounted():
    phi = torch.tensor([0.2, 0.9, 0.2])  # leave a state and come back
    shaped = potential_shaping(torch.zeros(2), phi, torch.tensor([False, False]), 1.0, "keep")
    assert abs(float(shaped.sum())) < 1e-7


def test_combine_bonuses_spec_cases():
    glob, epi = torch.tensor([0.5, 2, 1]), torch.tensor([1, 0.25, 0])
    torch.testing.assert_close(combine_bonuses(glob, epi, "product"), torch.tensor([0.5, 0.5, 0.0]))
    torch.testing.assert_close(combine_bonuses(glob, epi, "sum"), torch.tensor([1.5, 2.25, 1.0]))


def test_count_bonus_product_spec_case():
    # lifetime counts before: a:3, c:1; the episode visits a, b, a, c, a
    first_visit = torch.tensor([1.0, 1, 0, 1, 0])
    lifetime = torch.tensor([4.0, 1, 5, 2, 6])
    torch.testing.assert_close(
        combine_bonuses(lifetime.rsqrt(), first_visit), torch.tensor([0.5, 1.0, 0, 0.707107, 0]), atol=1e-6, rtol=0
    )


def test_unknown_terminal_potential_is_an_error():
    import pytest

    with pytest.raises(ValueError, match=r"terminal_potential='zeros' is not one of \['zero', 'keep'\]"):
        potential_shaping(torch.zeros(1), torch.zeros(2), torch.tensor([True]), 0.9, "zeros")


def test_package_exposes_shaping_and_rewards():
    import polyreward as pr

    assert pr.shaping.combine_bonuses is combine_bonuses
    assert pr.rewards.hbpo_reward([800], [1024], [True]).shape == (1,)
