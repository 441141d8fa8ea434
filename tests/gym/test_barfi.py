"""BARFI in the gym trainer: the blended reward (spec case), the one-step hypergradient (global and
per-state weights) against autograd through an explicit SGD step, the outer update on envs whose
auxiliary reward is misaligned / aligned with the primary one (globally or state by state), exact
resume, and config errors."""

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
from polyreward.gym.barfi import RewardBlend, blend_rewards, policy_gradient, sample_alignment
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


class SplitBandit(gym.Env):
    """``horizon`` two-armed choices, each in a state drawn uniformly from {0, 1} (one-hot observation).
    Arm 0 pays the primary reward 1 in both states; the auxiliary ``info["aux"]`` pays 1 for arm 0 in
    state 0 (helpful) and for arm 1 in state 1 (harmful)."""

    def __init__(self, horizon: int = 8):
        self.horizon = horizon
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t, self.state = 0, 0

    def _obs(self) -> np.ndarray:
        self.state = int(self.np_random.integers(2))
        return np.eye(2, dtype=np.float32)[self.state]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        primary = 1.0 if action == 0 else 0.0
        aux = float(action == self.state)
        return self._obs(), primary, self.t >= self.horizon, False, {"aux": aux}


gym.register("polyreward-test/AuxBandit-v0", entry_point=AuxBandit)
gym.register("polyreward-test/SplitBandit-v0", entry_point=SplitBandit)

SMALL = {"num_envs": 2, "num_steps": 16, "minibatches": 2, "epochs": 2, "tensorboard": False, "threads": 1}
BARFI = {"env_id": "polyreward-test/AuxBandit-v0", "info_rewards": ["aux"], "barfi_primary": "reward"}


def test_spec_blended_reward():
    """algorithms-classic.md §8: φ = [1.0, 0.3], r = [r_p = 1, r_aux = 2] -> 1·1 + 0.3·2 = 1.6."""
    assert blend_rewards(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.3])).item() == pytest.approx(1.6)
    blend = RewardBlend(["primary", "aux"], "primary", [1.0, 0.3])
    assert blend.weights.tolist() == pytest.approx([1.0, 0.3])
    assert blend.blend(torch.tensor([[1.0, 2.0], [0.0, -1.0]])).tolist() == pytest.approx([1.6, -0.3])
    assert list(blend.metrics()) == ["barfi/weight/aux"]  # the primary's weight is not learned


class LinearPolicy(torch.nn.Module):
    """A tiny linear softmax policy with the two methods BARFI's gradients use."""

    def __init__(self, obs_dim: int, actions: int):
        super().__init__()
        self.logits = torch.nn.Linear(obs_dim, actions)

    def evaluate(self, obs, actions):
        logp = torch.log_softmax(self.logits(obs), -1).gather(-1, actions[:, None]).squeeze(-1)
        return logp, torch.zeros_like(logp), torch.zeros(len(obs), 1)

    def forward(self, obs, actions):
        return self.evaluate(obs, actions)[0]


@pytest.mark.parametrize("hidden", [None, [], [4]], ids=["global", "state-linear", "state-mlp"])
def test_hypergradient_equals_autograd_through_one_sgd_step(hidden):
    """dJ_p(θ')/dψ with θ' = θ + α ∇_θ mean_b(ρ_b(θ) (A_p,b + Σ_k φ_k(s_b; ψ) A_k,b)), by autograd through
    the step, equals α ∂/∂ψ mean_b(c_b Σ_k φ_k(s_b) A_k,b), c_b = ∇ρ_b(θ)·g_p(θ') (what outer_step ascends).
    Global φ: the gradient is α g_k(θ)·g_p(θ'); per-state φ_ψ(s): every parameter of the network."""
    torch.manual_seed(0)
    policy = LinearPolicy(3, 3)
    obs, actions = torch.randn(20, 3), torch.randint(0, 3, (20,))
    with torch.no_grad():
        old_logp = policy.evaluate(obs, actions)[0] + 0.1 * torch.randn(20)
    adv = torch.randn(20, 3)  # columns: primary, aux1, aux2
    blend = RewardBlend(
        ["p", "a1", "a2"], "p", [1.0, 0.5, -0.2], lr=1e-3, obs_dim=None if hidden is None else 3, hidden=hidden or []
    )
    with torch.no_grad():  # move the per-state net off its zero-initialized head so that every parameter matters
        for p in blend.weight_fn.parameters():
            p.add_(0.3 * torch.randn_like(p))
    psi = [p for p in blend.weight_fn.parameters()]
    alpha = 0.3

    theta = {k: v.detach().clone().requires_grad_() for k, v in policy.named_parameters()}
    weights = blend.weight_fn(obs)  # [B, 2], differentiable in ψ
    inner = ((_logp(policy, theta, obs, actions) - old_logp).exp() * (adv[:, 0] + (weights * adv[:, 1:]).sum(-1))).mean()
    step = torch.autograd.grad(inner, list(theta.values()), create_graph=True)
    theta_new = {k: v + alpha * g for (k, v), g in zip(theta.items(), step, strict=True)}
    j_p = ((_logp(policy, theta_new, obs, actions) - old_logp).exp() * adv[:, 0]).mean()
    expected = torch.autograd.grad(j_p, psi)

    before = RewardBlend.snapshot(policy)
    with torch.no_grad():
        for k, p in policy.named_parameters():
            p.copy_(theta_new[k])
    primary = policy_gradient(policy, obs, actions, old_logp, adv[:, 0])
    align = sample_alignment(policy, before, obs, actions, old_logp, primary)
    hyper = blend.ascend(obs, adv[:, 1:], align)  # leaves -∂objective/∂ψ in .grad (Adam minimizes)
    for p, e in zip(psi, expected, strict=True):
        torch.testing.assert_close(-alpha * p.grad, e, rtol=1e-4, atol=1e-7)
        assert e.abs().max() > 1e-5  # not a trivially zero case
    if hidden is None:  # global: g_k(θ)·g_p(θ'), component by component
        grads = [policy_gradient(_at(policy, before), obs, actions, old_logp, adv[:, k]) for k in (1, 2)]
        dots = torch.stack([sum((g * q).sum() for g, q in zip(gk, primary, strict=True)) for gk in grads])
        torch.testing.assert_close(hyper, dots, rtol=1e-4, atol=1e-7)


def _at(policy, params):
    """A copy of ``policy`` at ``params``."""
    import copy

    other = copy.deepcopy(policy)
    with torch.no_grad():
        for k, p in other.named_parameters():
            p.copy_(params[k])
    return other


def _logp(policy, params, obs, actions):
    return functional_call(policy, params, (obs, actions))


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


def test_per_state_weights_learn_opposite_signs(tmp_path):
    """SplitBandit: the auxiliary reward agrees with the primary in state 0 and opposes it in state 1.
    From φ(s) = 0 everywhere, per-state BARFI raises φ(state 0) above 0 and lowers φ(state 1) below 0;
    the global φ (one number for both states) cannot tell them apart. ``gamma=0`` makes it a contextual
    bandit, so that a step's advantages are not blurred by the next (random) state's rewards."""
    config = GymConfig(
        **{**BARFI, "env_id": "polyreward-test/SplitBandit-v0"},
        **{**SMALL, "num_envs": 4, "num_steps": 32},
        gamma=0.0,
        weights={"aux": 0.0},
        barfi_weights="state",
        barfi_hidden_sizes=[],  # linear in the one-hot state
        barfi_lr=0.05,
        lr=1e-3,
        anneal_lr=False,
        output_dir=str(tmp_path),
    )
    ppo = PPO(config.env_id, config).learn(15 * 128, progress=False)
    phi = ppo.barfi.sample_weights(torch.eye(2))[:, 1].tolist()
    assert phi[0] > 0.2 and phi[1] < -0.5, phi
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["barfi/weight/aux"] == pytest.approx(float(ppo.weights[1]))  # the rollout's mean φ(s)


@pytest.mark.parametrize("weights", ["global", "state"])
def test_barfi_resume_is_bit_identical(tmp_path, weights):
    config = GymConfig(**BARFI, **SMALL, weights={"aux": 1.5}, barfi_every=2, save_every=2, barfi_weights=weights)
    whole = PPO(config.env_id, dataclasses.replace(config, output_dir=str(tmp_path / "whole"))).learn(8 * 32, progress=False)
    first = PPO(config.env_id, dataclasses.replace(config, output_dir=str(tmp_path / "cut")))
    first.learn(8 * 32, progress=False, callback=lambda ppo, _: ppo.update < 4)
    del first
    torch.manual_seed(1234)
    resumed = PPO.load(tmp_path / "cut").learn(8 * 32, progress=False)
    for (name, a), b in zip(
        whole.barfi.weight_fn.state_dict().items(), resumed.barfi.weight_fn.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert torch.equal(resumed.weights, whole.weights)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert whole.weights[1].item() != 1.5  # φ moved
    if weights == "global":
        torch.testing.assert_close(resumed.barfi.phi.detach(), whole.barfi.phi.detach(), rtol=0, atol=0)
    else:
        with pytest.raises(ConfigError, match="barfi_weights: the checkpoint holds 'state'"):
            PPO.load(tmp_path / "cut", barfi_weights="global", output_dir=str(tmp_path / "other"))


def test_barfi_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="critic='multi'"):
        GymConfig(barfi_primary="reward", critic="single")
    with pytest.raises(ConfigError, match="barfi_lr"):
        GymConfig(barfi_primary="reward", barfi_lr=0.0)
    with pytest.raises(ConfigError, match=r"barfi_weights='states' is not one of \['global', 'state'\]"):
        GymConfig(barfi_primary="reward", barfi_weights="states")
    with pytest.raises(ConfigError, match="barfi_weights: 'state' .* set barfi_primary"):
        GymConfig(barfi_weights="state")
    with pytest.raises(ConfigError, match="barfi_hidden_sizes"):
        GymConfig(barfi_primary="reward", barfi_weights="state", barfi_hidden_sizes=[0])
    config = GymConfig(**{**BARFI, "barfi_primary": "treasure"}, **SMALL, output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"'treasure' is not a reward component; the components are \['reward', 'aux'\]"):
        PPO(config.env_id, config)
    with pytest.raises(ConfigError, match="besides"):
        RewardBlend(["reward"], "reward", [1.0])


def test_a_checkpoint_from_before_per_state_weights_loads():
    """Older checkpoints hold ``{"phi", "optimizer"}``; they load into global weights."""
    old = RewardBlend(["reward", "aux"], "reward", [1.0, 0.7])
    state = {"phi": torch.tensor([-0.25]), "optimizer": old.optimizer.state_dict()}
    blend = RewardBlend(["reward", "aux"], "reward", [1.0, 0.7])
    blend.load_state_dict(state)
    assert blend.weights.tolist() == [1.0, -0.25]
