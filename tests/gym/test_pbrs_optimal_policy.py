"""Potential-based shaping keeps the optimal policy of a small tabular MDP; paying progress as reward does not.

The MDP (deterministic, γ = 0.8): a corridor of states 0..6. States 0 and 6 are terminal; 1..5 are the
decision states. Actions: L (s-1), S (stay), R (s+1). Entering 0 pays 0.6 (a near, small exit);
entering 6 pays 1.0 (the far, big exit); every other step pays 0.

Optimal values by hand: going right from s reaches 6 after 6-s steps -> 0.8^(5-s); going left reaches 0
after s steps -> 0.6 · 0.8^(s-1); staying only delays. V* = [0.6, 0.512, 0.64, 0.8, 1.0] for s = 1..5,
with policy [L, R, R, R, R] (s = 1: 0.6 > 0.8^4 = 0.4096; s = 2: 0.8^3 = 0.512 > 0.6 · 0.8 = 0.48).

Shaping is applied with the library function ``polyreward.shaping.potential_shaping`` on every
(s, a) transition at once (T = 1, the transitions on the trailing axis).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polyreward.shaping import potential_shaping

GAMMA = 0.8
N = 7  # states 0..6
STATES = np.arange(1, 6)  # decision states
L, S, R = 0, 1, 2
NEXT = np.stack([STATES - 1, STATES, STATES + 1], axis=1)  # [5, 3]
TERM = (NEXT == 0) | (NEXT == N - 1)  # [5, 3] the transition ends the episode
REWARD = np.where(NEXT == 0, 0.6, 0.0) + np.where(NEXT == N - 1, 1.0, 0.0)  # [5, 3]

# Q*(s, a) = r + γ (1 - term) V*(s') from the hand values above (rows s = 1..5, columns L, S, R).
V_STAR = {0: 0.0, 1: 0.6, 2: 0.512, 3: 0.64, 4: 0.8, 5: 1.0, 6: 0.0}
Q_STAR = np.array(
    [
        [0.6, 0.48, 0.4096],
        [0.48, 0.4096, 0.512],
        [0.4096, 0.512, 0.64],
        [0.512, 0.64, 0.8],
        [0.64, 0.8, 1.0],
    ]
)
POLICY_STAR = [L, R, R, R, R]

PROGRESS = np.arange(N) / 6.0  # Φ(s) = s / 6: progress toward the big exit
POTENTIALS = {
    "progress": PROGRESS,
    # adversarial: strongly rewards stepping toward the small exit (F(s, L) = 0.8·10(7-s) - 10(6-s) > 0)
    "toward_small_exit": 10.0 * (6 - np.arange(N)),
    # adversarial: -50 V*, i.e. shaping pays for leaving good states
    "negated_value": -50.0 * np.array([V_STAR[s] for s in range(N)]),
    "random": np.random.default_rng(7).uniform(-5.0, 5.0, N),
}


def value_iteration(reward: np.ndarray, iters: int = 2000) -> np.ndarray:
    """Q[5, 3] of the corridor with per-transition rewards ``reward[5, 3]``; terminal states have value 0."""
    values = np.zeros(N)
    for _ in range(iters):
        q = reward + GAMMA * np.where(TERM, 0.0, values[NEXT])
        values[STATES] = q.max(axis=1)
    assert np.abs(q - (reward + GAMMA * np.where(TERM, 0.0, values[NEXT]))).max() < 1e-12
    return q


def greedy(q: np.ndarray) -> list[int]:
    """Argmax per state, after checking it is unique (no tie decides a comparison)."""
    top2 = np.sort(q, axis=1)[:, -2:]
    assert np.all(top2[:, 1] - top2[:, 0] > 1e-6), q
    return q.argmax(axis=1).tolist()


def shaped_reward(potential: np.ndarray, terminal_potential: str) -> np.ndarray:
    """``r + γ Φ(s') - Φ(s)`` for every transition, from ``potential_shaping`` (T = 1, 15 transitions)."""
    phi_s = np.repeat(potential[STATES], 3)
    phi_next = potential[NEXT].reshape(-1)
    out = potential_shaping(
        torch.tensor(REWARD.reshape(1, -1)),
        torch.tensor(np.stack([phi_s, phi_next])),
        torch.tensor(TERM.reshape(1, -1)),
        GAMMA,
        terminal_potential,  # type: ignore[arg-type]
    )
    return out.numpy().reshape(5, 3)


def test_value_iteration_reproduces_the_hand_values():
    q = value_iteration(REWARD)
    np.testing.assert_allclose(q, Q_STAR, atol=1e-12)
    assert greedy(q) == POLICY_STAR


@pytest.mark.parametrize("name", sorted(POTENTIALS))
def test_zero_terminal_potential_keeps_the_optimal_policy(name):
    """Ng et al. (1999): with Φ = 0 after termination, Q'(s, a) = Q*(s, a) - Φ(s) exactly."""
    potential = POTENTIALS[name]
    q_shaped = value_iteration(shaped_reward(potential, "zero"))
    np.testing.assert_allclose(q_shaped, Q_STAR - potential[STATES][:, None], atol=1e-9)
    assert greedy(q_shaped) == POLICY_STAR


def test_the_adversarial_potential_misleads_a_one_step_greedy_agent():
    """``toward_small_exit`` (Φ = 10(6 - s), Φ = 0 after termination) is not harmless locally. Shaped
    one-step rewards r + F by hand: F(s, L) = 8(7 - s) - 10(6 - s) = 2s - 4 (s >= 2),
    F(s, S) = -2(6 - s), F(s, R) = 8(5 - s) - 10(6 - s) = 2s - 20 (s <= 4);
    s = 1: L = 0.6 - 50 = -49.4, S = -10, R = -18 -> S;  s = 5: L = 6, S = -2, R = 1 - 10 = -9 -> L.
    So a one-step greedy agent plays [S, L, L, L, L], unlike π* in every state; planning restores π*."""
    immediate = shaped_reward(POTENTIALS["toward_small_exit"], "zero")
    np.testing.assert_allclose(immediate[0], [-49.4, -10.0, -18.0], atol=1e-12)
    np.testing.assert_allclose(immediate[4], [6.0, -2.0, -9.0], atol=1e-12)
    assert greedy(immediate) == [S, L, L, L, L]
    assert greedy(value_iteration(immediate)) == POLICY_STAR


@pytest.mark.parametrize("name", sorted(POTENTIALS))
def test_keep_terminal_potential_acts_as_a_terminal_bonus(name):
    """With ``terminal_potential="keep"`` the shaping sums to γ^T Φ(s_T) - Φ(s_0): the same as the
    "zero" convention plus a bonus γ Φ(s_T) on entering each terminal state s_T. So Q'_keep = Q⁺ - Φ(s),
    where Q⁺ solves the MDP whose terminal rewards are r + γ Φ(s_T)."""
    potential = POTENTIALS[name]
    q_keep = value_iteration(shaped_reward(potential, "keep"))
    q_plus = value_iteration(REWARD + np.where(TERM, GAMMA * potential[NEXT], 0.0))
    np.testing.assert_allclose(q_keep, q_plus - potential[STATES][:, None], atol=1e-9)
    assert greedy(q_keep) == greedy(q_plus)


def test_keep_terminal_potential_changes_the_policy_when_exits_differ_in_potential():
    """Φ = s/6: "keep" adds 0.8 · Φ(6) = 0.8 to the big exit and 0 to the small one. From s = 1, going
    right is now worth 1.8 · 0.8^4 = 0.73728 > 0.6, so the policy becomes [R, R, R, R, R].
    Φ = 10(6 - s): the small exit gains 0.8 · 60 = 48, so every state goes left."""
    assert greedy(value_iteration(shaped_reward(PROGRESS, "keep"))) == [R] * 5
    q_plus_1 = value_iteration(REWARD + np.where(TERM, GAMMA * PROGRESS[NEXT], 0.0))[0]
    np.testing.assert_allclose(q_plus_1[[L, R]], [0.6, 0.73728], atol=1e-12)
    assert greedy(value_iteration(shaped_reward(POTENTIALS["toward_small_exit"], "keep"))) == [L] * 5


def test_naive_progress_reward_changes_the_optimal_policy():
    """Paying r + Φ(s') with Φ = s/6 (the "semantic trap"): staying in s = 5 pays 5/6 forever,
    (5/6) / (1 - 0.8) = 25/6 ≈ 4.167, more than finishing (1 + Φ(6) = 2). By hand:
    V(5) = 25/6 (S);  V(4) = Φ(5) + 0.8 V(5) = 25/6 (R; S gives 4/6 + 20/6 = 4);
    V(3) = 4/6 + 0.8 · 25/6 = 4 (R);  V(2) = 1/2 + 0.8 · 4 = 3.7 (R);
    V(1) = 1/3 + 0.8 · 3.7 = 3.29333 (R; the small exit gives 0.6 + Φ(0) = 0.6).
    Policy [R, R, R, R, S]: it never finishes, and s = 1 no longer takes the near exit."""
    naive = REWARD + PROGRESS[NEXT]
    q = value_iteration(naive)
    np.testing.assert_allclose(q.max(axis=1), [3.7 * 0.8 + 1 / 3, 3.7, 4.0, 25 / 6, 25 / 6], atol=1e-9)
    np.testing.assert_allclose(q[4], [4.0, 25 / 6, 2.0], atol=1e-9)
    policy = greedy(q)
    assert policy == [R, R, R, R, S]
    assert policy != POLICY_STAR


def _rollout(policy: list[int], start: int, steps: int = 50) -> int | None:
    """Steps until termination from ``start`` following ``policy`` (None: never terminates)."""
    state = start
    for step in range(1, steps + 1):
        state = int(NEXT[state - 1, policy[state - 1]])
        if state in (0, N - 1):
            return step
    return None


def test_shaped_agent_finishes_and_naive_agent_hovers():
    shaped = greedy(value_iteration(shaped_reward(PROGRESS, "zero")))
    naive = greedy(value_iteration(REWARD + PROGRESS[NEXT]))
    assert _rollout(shaped, start=3) == 3
    assert _rollout(naive, start=3) is None
