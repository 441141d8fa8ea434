"""MoE trunk (ScaleZero-style): top-k gating by hand, the Switch balance loss by hand, routing gradients,
stacked experts against a per-expert loop, and its wiring into ActorCritic, GymConfig and PPO."""

from __future__ import annotations

import math

import gymnasium as gym
import pytest
import torch

from polyreward.config import ConfigError
from polyreward.gym import PPO, ActorCritic, GymConfig, MoEMLP, MoESpec
from polyreward.gym.networks import moe_combine, switch_balance_loss, topk_gates
from polyreward.runlog import read_metrics

pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered:UserWarning")

# spec case: logits [2, 1, 0], k = 2 -> softmax over {2, 1}: e / (e + 1) = 0.731059, 1 / (e + 1) = 0.268941
GATE0, GATE1 = math.e / (math.e + 1), 1 / (math.e + 1)
SPEC_Y = GATE0 * 1 + GATE1 * 10  # 3.420473


def constant_moe(outputs, logits, shared: float | None = None, k: int = 2) -> MoEMLP:
    """A 1-layer MoEMLP whose experts output the constants ``outputs`` and whose router gives ``logits``
    for every input (all weights zero, biases set)."""
    moe = MoEMLP(3, 1, n_experts=len(outputs), k=k, shared=shared is not None)
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.bias.copy_(torch.tensor(logits))
        moe.experts.weights[0].zero_()
        moe.experts.biases[0].copy_(torch.tensor(outputs, dtype=torch.float32).reshape(-1, 1, 1))
        if shared is not None:
            moe.shared.weights[0].zero_()
            moe.shared.biases[0].fill_(shared)
    return moe


def test_spec_case_top2_gates_and_output():
    assert pytest.approx(3.420473, abs=1e-6) == SPEC_Y
    gates, index = topk_gates(torch.tensor([[2.0, 1.0, 0.0]]), k=2)
    assert index.tolist() == [[0, 1]]
    torch.testing.assert_close(gates, torch.tensor([[0.731059, 0.268941]]), atol=1e-6, rtol=0)
    y = moe_combine(torch.tensor([[[1.0], [10.0], [100.0]]]), gates, index)
    assert y.item() == pytest.approx(3.420473, abs=1e-5)


def test_spec_case_through_the_module_with_and_without_a_shared_expert():
    x = torch.randn(4, 3)
    y = constant_moe([1.0, 10.0, 100.0], [2.0, 1.0, 0.0])(x)
    torch.testing.assert_close(y, torch.full((4, 1), SPEC_Y), atol=1e-5, rtol=0)
    y_shared = constant_moe([1.0, 10.0, 100.0], [2.0, 1.0, 0.0], shared=5.0)(x)
    torch.testing.assert_close(y_shared, torch.full((4, 1), SPEC_Y + 5.0), atol=1e-5, rtol=0)
    # k = 1: only expert 0
    torch.testing.assert_close(constant_moe([1.0, 10.0, 100.0], [2.0, 1.0, 0.0], k=1)(x), torch.ones(4, 1))


def test_switch_balance_loss_by_hand():
    # rows [2,1,0] and [0,1,2], k = 1: experts 0 and 2 each take half the slots, f = [0.5, 0, 0.5];
    # P = mean softmax = [(a + c)/2, b, (a + c)/2] with softmax([2,1,0]) = [a, b, c]
    z = math.exp(2) + math.exp(1) + 1
    a, c = math.exp(2) / z, 1 / z
    expected = 3 * (0.5 * (a + c) / 2 + 0.5 * (a + c) / 2)  # 1.132908
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    _, index = topk_gates(logits, 1)
    assert switch_balance_loss(logits, index).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(1.132908, abs=1e-6)
    # uniform router, slots spread evenly over 4 experts (k = 2): f = P = 1/4 -> 1.0
    uniform = torch.zeros(2, 4)
    assert switch_balance_loss(uniform, torch.tensor([[0, 1], [2, 3]])).item() == pytest.approx(1.0)
    # everything to expert 0 with probability ~1: -> E
    collapsed = torch.tensor([[50.0, 0.0, 0.0, 0.0]] * 3)
    assert switch_balance_loss(collapsed, torch.zeros(3, 1, dtype=torch.long)).item() == pytest.approx(4.0)


def test_unchosen_experts_get_no_gradient_and_the_balance_loss_reaches_the_router():
    torch.manual_seed(0)
    moe = MoEMLP(3, 2, n_experts=3, k=1, shared=False, hidden=[5])
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))  # expert 1 for every input
    moe(torch.randn(6, 3)).sum().backward()
    for weight in moe.experts.weights:
        assert weight.grad[0].abs().sum() == 0 and weight.grad[2].abs().sum() == 0
        assert weight.grad[1].abs().sum() > 0
    moe.zero_grad()
    moe(torch.randn(6, 3))
    moe.balance_loss.backward()
    assert moe.router.bias.grad.abs().sum() > 0


def test_stacked_experts_match_a_loop_and_k_equal_experts_is_the_dense_softmax_mixture():
    torch.manual_seed(1)
    moe = MoEMLP(4, 3, n_experts=3, k=3, shared=True, hidden=[8, 6])
    x = torch.randn(5, 4)

    def member(stack, j):
        h = x
        for i, (w, b) in enumerate(zip(stack.weights, stack.biases, strict=True)):
            h = h @ w[j] + b[j]
            h = torch.tanh(h) if i < len(stack.weights) - 1 else h
        return h

    outs = torch.stack([member(moe.experts, j) for j in range(3)], dim=1)  # [B, E, O]
    torch.testing.assert_close(moe.experts(x), outs)
    dense = (moe.router(x).softmax(-1)[..., None] * outs).sum(1) + member(moe.shared, 0)
    torch.testing.assert_close(moe(x), dense)


def test_actor_critic_with_moe_trunks():
    space = gym.spaces.Box(-1, 1, (4,))
    separate = ActorCritic(7, space, 2, [16, 16], shared=False, moe=MoESpec(experts=4, top_k=2))
    assert sum(isinstance(m, MoEMLP) for m in separate.modules()) == 2
    logp, entropy, values = separate.evaluate(torch.randn(5, 7), torch.randn(5, 4))
    assert logp.shape == entropy.shape == (5,) and values.shape == (5, 2)
    assert separate.balance_loss().requires_grad and separate.balance_loss().item() > 0
    shared = ActorCritic(7, space, 2, [16], shared=True, moe=MoESpec(experts=2, top_k=1, shared_expert=False))
    assert sum(isinstance(m, MoEMLP) for m in shared.modules()) == 1
    assert ActorCritic(7, space, 2).balance_loss().item() == 0.0
    with pytest.raises(ConfigError, match=r"moe_top_k: must be in \[1, moe_experts=2\], got 3"):
        GymConfig(trunk="moe", moe_experts=2, moe_top_k=3)


def test_ppo_adds_the_balance_loss_and_logs_it(tmp_path):
    small = {
        "num_envs": 2,
        "num_steps": 16,
        "minibatches": 2,
        "epochs": 1,
        "tensorboard": False,
        "trunk": "moe",
        "threads": 1,
    }
    routers = []
    for coef in (0.0, 10.0):
        config = GymConfig(env_id="CartPole-v1", output_dir=str(tmp_path / f"c{coef}"), moe_balance_coef=coef, **small)
        ppo = PPO(config.env_id, config).learn(32, progress=False)
        routers.append(ppo.model.actor_body[0].router.weight.detach().clone())
        (record,) = read_metrics(tmp_path / f"c{coef}")
        assert record["losses/moe_balance"] > 0
    # same seed, same rollout: only the balance term differs
    assert not torch.allclose(routers[0], routers[1])
