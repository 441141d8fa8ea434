"""BARFI in the gym trainer: the blended reward (spec case), the one-step hypergradient against autograd
through an explicit SGD step, the outer update on envs whose auxiliary reward is misaligned / aligned
with the primary one, exact resume, and config errors."""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.func import functional_call

from polyreward.config import ConfigError
from polyreward.gym import PPO, GymConfig
from polyreward.gym.barfi import RewardBlend, blend_rewards, gradient_alignment, policy_gradient
from polyreward.gym.networks import ActorCritic
from tests.gym.test_pvn import _one_thread  # noqa: F401  (autouse: one torch thread)


class AuxBandit(gym.Env):
    """``horizon`` steps of a two-armed choice. Arm 0 pays the primary reward 1, arm 1 pays 0; the
    auxiliary reward ``info["aux"]`` pays 1 for arm 1 (``aligned=False``: paying it lowers the primary
    return) or for arm 0 (``aligned=True``). Observation: the time step as a fraction of the horizon."""

    def __init__(self, horizon: int = 8, aligned: bool = False):
        self.horizon, self.aligned = horizon, aligned
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        primary = 1.0 if action == 0 else 0.0
        aux = primary if self.aligned else 1.0 - primary
        obs = np.array([self.t / self.horizon], dtype=np.float32)
        return obs, primary, self.t >= self.horizon, False, {"aux": aux}


gym.register("polyreward-test/AuxBandit-v0", entry_point=AuxBandit)

SMALL = {"num_envs": 2, "num_steps": 16, "minibatches": 2, "epochs": 2, "tensorboard": False, "threads": 1}
BARFI = {"env_id": "polyreward-test/AuxBandit-v0", "info_rewards": ["aux"], "barfi_primary": "reward"}


def test_spec_blended_reward():
    """algorithms-classic.md §8: φ = [1.0, 0.3], r = [r_p = 1, r_aux = 2] -> 1·1 + 0.3·2 = 1.6."""
    assert blend_rewards(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.3])).item() == pytest.approx(1.6)
    blend = RewardBlend(["primary", "aux"], "primary", [1.0, 0.3])
    assert blend.weights.tolist() == pytest.approx([1.0, 0.3])
    assert blend.blend(torch.tensor([[1.0, 2.0], [0.0, -1.0]])).tolist() == pytest.approx([1.6, -0.3])
    assert list(blend.metrics()) == ["barfi/weight/aux"]  # the primary's weight is not learned


def test_hypergradient_equals_autograd_through_one_sgd_step():
    """dJ_p(θ')/dφ with θ' = θ + α Σ_k w_k(φ) g_k(θ), by autograd through the step, equals α g_p(θ')·g_k(θ)."""
    torch.manual_seed(0)
    model = ActorCritic(3, gym.spaces.Discrete(3), 3, [8], False)
    obs, actions = torch.randn(20, 3), torch.randint(0, 3, (20,))
    with torch.no_grad():
        old_logp = model.evaluate(obs, actions)[0] + 0.1 * torch.randn(20)
    adv = torch.randn(20, 3)  # columns: primary, aux1, aux2
    names = dict(model.named_parameters())
    theta = {k: v.detach() for k, v in names.items()}
    alpha = 0.3
    phi = torch.tensor([0.5, -0.2], requires_grad=True)
    weights = torch.cat([torch.ones(1), phi])

    # g_k(θ) as functions of θ so that θ' stays differentiable in φ
    def pg(params, a):
        logp = _logp(model, params, obs, actions)
        values = list(params.values())
        out = torch.autograd.grad(((logp - old_logp).exp() * a).mean(), values, create_graph=True, allow_unused=True)
        return [torch.zeros_like(v) if g is None else g for v, g in zip(values, out, strict=True)]

    grads = [pg({k: v.requires_grad_() for k, v in theta.items()}, adv[:, k]) for k in range(3)]
    step = [sum(weights[k] * grads[k][i] for k in range(3)) for i in range(len(theta))]
    theta_new = {k: v.detach() + alpha * s for (k, v), s in zip(theta.items(), step, strict=True)}
    j_p = ((_logp(model, theta_new, obs, actions) - old_logp).exp() * adv[:, 0]).mean()
    expected = torch.autograd.grad(j_p, phi)[0]

    inner = [policy_gradient(model, obs, actions, old_logp, adv[:, k]) for k in (1, 2)]
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.copy_(theta_new[k].detach())
    primary = policy_gradient(model, obs, actions, old_logp, adv[:, 0])
    torch.testing.assert_close(alpha * gradient_alignment(primary, inner), expected, rtol=1e-4, atol=1e-7)
    assert expected.abs().min() > 1e-6  # not a trivially zero case


def _logp(model, params, obs, actions):
    class _Evaluate(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, o, a):
            return self.inner.evaluate(o, a)[0]

    wrapped = _Evaluate(model)
    return functional_call(wrapped, {f"inner.{k}": v for k, v in params.items()}, (obs, actions))


@pytest.mark.parametrize(("aligned", "init"), [(False, 2.0), (True, 0.5)])
def test_barfi_lowers_a_misaligned_weight_and_raises_an_aligned_one(tmp_path, aligned, init):
    """Misaligned aux with weight 2: the fixed blend prefers arm 1 (primary 0); BARFI lowers φ_aux
    until arm 0 wins and the primary return beats the fixed-weight run's. Aligned aux: φ_aux grows."""
    env_kwargs = {"aligned": aligned}
    config = GymConfig(
        **BARFI,
        **SMALL,
        env_kwargs=env_kwargs,
        weights={"aux": init},
        barfi_lr=0.2,
        lr=3e-3,
        anneal_lr=False,
        output_dir=str(tmp_path / "b"),
    )
    ppo = PPO(config.env_id, config).learn(40 * 32, progress=False)
    records = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    phi = [r["barfi/weight/aux"] for r in records]
    assert ppo.weights.tolist() == pytest.approx([1.0, phi[-1]])
    if aligned:
        assert phi[-1] > init + 0.5, phi
        return
    assert phi[-1] < 0.5, phi  # below 1: arm 0's blended reward 1 beats arm 1's φ
    fixed = dataclasses.replace(config, barfi_primary="", output_dir=str(tmp_path / "f"))
    PPO(fixed.env_id, fixed).learn(40 * 32, progress=False)
    fixed_records = [json.loads(line) for line in (tmp_path / "f" / "metrics.jsonl").read_text().splitlines()]
    late = [r["reward/reward/episodic_return"] for r in records[-10:] if "reward/reward/episodic_return" in r]
    late_fixed = [r["reward/reward/episodic_return"] for r in fixed_records[-10:] if "reward/reward/episodic_return" in r]
    assert np.mean(late) > np.mean(late_fixed) + 2.0, (late, late_fixed)  # out of a horizon of 8


def test_barfi_resume_is_bit_identical(tmp_path):
    config = GymConfig(**BARFI, **SMALL, weights={"aux": 1.5}, barfi_every=2, save_every=2)
    whole = PPO(config.env_id, dataclasses.replace(config, output_dir=str(tmp_path / "whole"))).learn(8 * 32, progress=False)
    first = PPO(config.env_id, dataclasses.replace(config, output_dir=str(tmp_path / "cut")))
    first.learn(8 * 32, progress=False, callback=lambda ppo, _: ppo.update < 4)
    del first
    torch.manual_seed(1234)
    resumed = PPO.load(tmp_path / "cut").learn(8 * 32, progress=False)
    torch.testing.assert_close(resumed.barfi.phi.detach(), whole.barfi.phi.detach(), rtol=0, atol=0)
    assert torch.equal(resumed.weights, whole.weights)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert whole.barfi.phi.item() != 1.5  # φ moved


def test_barfi_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="critic='multi'"):
        GymConfig(barfi_primary="reward", critic="single")
    with pytest.raises(ConfigError, match="barfi_lr"):
        GymConfig(barfi_primary="reward", barfi_lr=0.0)
    config = GymConfig(**{**BARFI, "barfi_primary": "treasure"}, **SMALL, output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"'treasure' is not a reward component; the components are \['reward', 'aux'\]"):
        PPO(config.env_id, config)
    with pytest.raises(ConfigError, match="besides"):
        RewardBlend(["reward"], "reward", [1.0])
