"""Hand-computed cases from shared/docs/algorithms-llm.md and algorithms-classic.md."""

import math

import pytest
import torch

import polyreward as pr
from polyreward.advantages import compute
from polyreward.rewards import hbpo_reward

TOL = 1e-3


def close(actual, expected, tol=TOL):
    torch.testing.assert_close(
        torch.as_tensor(actual, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64), atol=tol, rtol=0
    )


@pytest.fixture
def gdpo_batch():
    rewards = [[1, 1], [1, 0], [0, 1], [0, 0], [1, 1], [1, 1], [0, 1], [1, 1]]
    return pr.RewardBatch(rewards=rewards, names=["r1", "r2"], group_ids=[0, 0, 0, 0, 1, 1, 1, 1])


def test_gdpo_spec_case(gdpo_batch):
    result = compute("gdpo", gdpo_batch)
    close(result.extras["normalized"][:4], [[0.8660, 0.8660], [0.8660, -0.8660], [-0.8660, 0.8660], [-0.8660, -0.8660]])
    close(result.extras["normalized"][4:, 0], [0.5, 0.5, -1.5, 0.5])
    close(result.extras["normalized"][4:, 1], [0, 0, 0, 0])
    close(result.advantages, [1.5274, 0, 0, -1.5274, 0.4409, 0.4409, -1.3227, 0.4409])
    pre = compute("gdpo", gdpo_batch, batch_norm=None).advantages
    close(pre, [1.7318, 0, 0, -1.7318, 0.4999, 0.4999, -1.4997, 0.4999])


def test_grpo_spec_case(gdpo_batch):
    close(compute("grpo", gdpo_batch).advantages, [1.2246, 0, 0, -1.2246, 0.4999, 0.4999, -1.4997, 0.4999])


@pytest.mark.parametrize(
    ("pair", "grpo", "gdpo_pre"),
    [
        ([[0, 0], [0, 1]], [-0.7071, 0.7071], [-0.7071, 0.7071]),
        ([[0, 0], [1, 1]], [-0.7071, 0.7071], [-1.4142, 1.4142]),
        ([[0, 1], [1, 1]], [-0.7071, 0.7071], [-0.7071, 0.7071]),
    ],
)
def test_gdpo_collapse_table(pair, grpo, gdpo_pre):
    batch = pr.RewardBatch(rewards=pair, names=["r1", "r2"], group_ids=[0, 0])
    close(compute("grpo", batch).advantages, grpo)
    close(compute("gdpo", batch, batch_norm=None).advantages, gdpo_pre)


def test_gdpo_collapse_counted_by_diagnostics():
    """GDPO's table: GRPO maps the three reward pairs to one advantage pattern, GDPO keeps two scales."""
    rewards = [[0, 0], [0, 1], [0, 0], [1, 1], [0, 1], [1, 1]]
    batch = pr.RewardBatch(rewards=rewards, names=["r1", "r2"], group_ids=[0, 0, 1, 1, 2, 2])
    assert pr.diagnose(batch, "grpo").batch_distinct_advantages == 2
    assert pr.diagnose(batch, "gdpo", batch_norm=None).batch_distinct_advantages == 4
    assert pr.diagnose(batch, "grpo").batch_distinct_reward_vectors == 3


def test_hdpo_spec_case():
    answer = torch.tensor([1.0, 1, 1, 0])
    fmt = torch.tensor([1.0, 1, 0, 1])
    tools = torch.tensor([0.0, 2, 1, 0])
    tool = torch.where(answer > 0, 1 / (tools + 1), torch.zeros(4))
    batch = pr.RewardBatch(
        rewards=torch.stack([answer, fmt, tool], 1), names=["answer", "format", "tool"], weights=[0.9, 0.1, 1.0]
    )
    result = compute("hdpo", batch)
    close(result.channels["primary"], [0.5735, 0.5735, 0.3441, -1.4912])
    close(result.channels["conditional"], [1.1209, -0.8006, -0.3203, 0.0])
    close(result.advantages, result.channels["primary"] + 0.15 * result.channels["conditional"], 1e-6)
    assert result.channel_weights == {"primary": 1.0, "conditional": 0.15}


def test_hdpo_single_qualifier_gets_zero_and_gate_option():
    # one correct rollout: |Q| = 1 < min_qualify -> conditional channel 0 (newer HDPO code)
    batch = pr.RewardBatch(rewards=[[1, 0.5], [0, 0], [0, 0]], names=["correct", "tool"])
    assert torch.equal(compute("hdpo", batch).channels["conditional"], torch.zeros(3))
    # gate on correctness: the wrong rollout with a positive tool reward does not qualify
    batch = pr.RewardBatch(rewards=[[1, 1.0], [1, 0.5], [0, 0.9]], names=["correct", "tool"])
    cond = compute("hdpo", batch, gate="correct").channels["conditional"]
    close(cond, [1 / math.sqrt(2) * 0.25 / 0.25 * 1, -0.7071, 0.0])  # (r - mean)/std over {1, .5}


def test_matchtir_dual_level_spec_case():
    batch = pr.RewardBatch(
        rewards=[[0.0]] * 3, names=["answer"], turn_rewards=[[0.8, 1, 1], [0.5, 0, None], [1.0, 0.6, None]]
    )
    result = compute("dual_level", batch, lam=0.9)
    close(result.extras["trajectory"], [1.0142, -0.9852, -0.0290])
    close(result.advantages, [[1.0012, 1.0562, 1.0071], [-0.9983, -0.9216, 0], [-0.0029, -0.1346, 0]])
    assert result.level == "turn" and result.mask.tolist() == [[True] * 3, [True, True, False], [True, True, False]]
    returns = pr.advantages.discounted_turn_returns(batch.turn_rewards, batch.turn_mask, 0.9)
    close(returns, [[2.51, 1.9, 1.0], [0.5, 0, 0], [1.54, 0.6, 0]])


@pytest.mark.parametrize(
    ("n", "budget", "expected"),
    [
        (800, 1024, 3.6955),
        (1500, 1024, 3.2400),
        (300, 512, 3.9231),
        (300, 2560, 2.2223),
        (3000, 512, 1.0248),
        (3000, 2560, 1.5248),
    ],
)
def test_hbpo_reward_spec_cases(n, budget, expected):
    close(hbpo_reward(torch.tensor([float(n)]), torch.tensor([float(budget)]), torch.tensor([True])), [expected])


def test_hbpo_reward_zero_when_wrong_or_too_long():
    r = hbpo_reward(torch.tensor([100.0, 5000.0]), torch.tensor([512.0, 512.0]), torch.tensor([False, True]))
    assert r.tolist() == [0.0, 0.0]


def test_hbpo_advantage_spec_case():
    n = torch.tensor([400, 700, 450, 3000, 1200, 2000, 2600, 3900.0])
    budgets = torch.tensor([512.0] * 4 + [2560.0] * 4)
    correct = torch.tensor([1, 1, 0, 1, 1, 1, 1, 0])
    reward = hbpo_reward(n, budgets, correct)
    close(reward, [3.9231, 3.8108, 0, 1.0248, 2.2223, 2.2223, 2.1612, 0])
    batch = pr.RewardBatch(rewards=reward[:, None], names=["budget"], budgets=budgets)
    result = compute("hbpo", batch)
    close(result.extras["inter"], [1.3245, 1.2502, -1.2702, -0.5925, 0.1995, 0.1995, 0.1592, -1.2702])
    close(result.extras["intra"], [-1.7335] * 4 + [-0.5708] * 4)
    close(result.advantages, [-0.4090, -0.4833, -3.0037, -2.3259, -0.3713, -0.3713, -0.4117, -1.8410])


def test_directional_spec_case():
    batch = pr.RewardBatch(rewards=[[0.8, 0.2], [0.6, 0.9], [0.9, -0.5]], names=["helpful", "verbose"])
    result = compute("directional", batch, angle=30)
    close(result.extras["scores"], [0.7928, 0.9696, 0.5294])
    assert result.extras["best_in_group"].tolist() == [1]
    same = compute("directional", batch, direction=[math.cos(math.pi / 6) * 3, math.sin(math.pi / 6) * 3])
    close(same.advantages, result.advantages, 1e-6)


def _slim_batch():
    rewards = torch.tensor([[1.0, 0], [0, 1], [1, 1]])[:, None, :]
    values = torch.tensor([[0.5, 0.2], [0.4, 0.3], [0.6, 0.1], [0, 0.5]])[:, None, :]
    batch = pr.RewardBatch.from_steps(
        rewards, ["reach", "skill"], terminated=[[0], [0], [1]], truncated=[[0], [0], [0]], weights=[1.0, 0.5]
    )
    return batch, values


def test_multi_critic_slim_spec_case():
    batch, values = _slim_batch()
    result = compute("multi_critic", batch, values=values, gamma=0.9, lam=0.95)
    close(result.extras["per_critic"][:, 0], [[1.27211, 1.403372], [0.482, 1.5595], [0.4, 0.9]])
    close(result.extras["returns"][:, 0], [[1.77211, 1.603372], [0.882, 1.8595], [1.0, 1.0]])
    close(result.advantages[:, 0], [1.61474, -0.117203, -1.497537])
    assert result.level == "step"


def test_multi_critic_moppo_scalarized_spec_case():
    batch, values = _slim_batch()
    result = compute("multi_critic", batch, values=values, gamma=0.9, lam=0.95, norm="scalarized")
    close(result.advantages[:, 0], [1.076338, -0.176061, -0.900277])
    unnormalized = compute("multi_critic", batch, values=values, gamma=0.9, lam=0.95, norm="none")
    close(unnormalized.advantages[:, 0], [1.973796, 1.26175, 0.85])


def test_gae_closed_form_constant_reward():
    """Reward 1 forever with V = 1/(1-gamma) is a fixed point: every TD error and advantage is 0."""
    gamma, steps = 0.9, 50
    rewards = torch.ones(steps, 1, 1)
    batch = pr.RewardBatch.from_steps(rewards, ["alive"], terminated=torch.zeros(steps, 1), truncated=torch.zeros(steps, 1))
    values = torch.full((steps + 1, 1), 1 / (1 - gamma))
    result = compute("gae", batch, values=values, gamma=gamma, lam=0.95)
    close(result.advantages, torch.zeros(steps, 1), 1e-5)
    close(result.extras["returns"], values[:-1], 1e-5)


def test_gae_truncation_bootstraps_termination_does_not():
    # one step, reward 1, next value 10: truncated bootstraps (1 + 0.5 * 10 - 0), terminated does not
    rewards = torch.ones(1, 2)
    values, next_values = torch.zeros(1, 2), torch.full((1, 2), 10.0)
    adv, _ = pr.advantages.gae(
        rewards,
        values,
        next_values,
        terminated=torch.tensor([[True, False]]),
        truncated=torch.tensor([[False, True]]),
        gamma=0.5,
        lam=1.0,
    )
    close(adv, [[1.0, 6.0]])


def test_gae_episode_boundary_stops_recursion():
    # two steps, the first truncated: A_0 must not include the second episode's advantage
    rewards = torch.tensor([[0.0], [1.0]])
    adv, _ = pr.advantages.gae(
        rewards,
        torch.zeros(2, 1),
        torch.zeros(2, 1),
        terminated=torch.tensor([[False], [True]]),
        truncated=torch.tensor([[True], [False]]),
        gamma=0.9,
        lam=1.0,
    )
    close(adv, [[0.0], [1.0]])
