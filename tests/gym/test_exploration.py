"""Exploration bonuses (Henaff et al. 2023, arXiv 2306.03236): E3B, inverse dynamics, RND, NovelD,
the running-std normalizer, the bonus pipeline in PPO, and exact save / load of the bonus state."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from polyreward.config import ConfigError, from_mapping
from polyreward.gym import PPO, ComponentWrapper, GymConfig, RewardVecEnv
from polyreward.gym.exploration import (
    EllipticalEpisodicBonus,
    ExplorationBonus,
    InverseDynamics,
    RNDBonus,
    RunningStd,
    noveld,
)
from tests.gym.test_envs import Counter

pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered:UserWarning")

SMALL = {"num_envs": 2, "num_steps": 16, "minibatches": 2, "epochs": 1, "tensorboard": False}
LEARNED = {"bonus_feature_dim": 8, "bonus_hidden_sizes": [32]}


def explicit_bonus(history: list[list[float]], phi: list[float], ridge: float) -> float:
    """``phi^T (ridge I + sum_i h_i h_i^T)^{-1} phi`` with numpy's inverse (no Sherman-Morrison)."""
    phi_np = np.asarray(phi, dtype=np.float64)
    cov = ridge * np.eye(len(phi)) + sum((np.outer(h, h) for h in history), np.zeros((len(phi), len(phi))))
    return float(phi_np @ np.linalg.inv(cov) @ phi_np)


# ---------------------------------------------------------------------------- E3B
def test_e3b_spec_case_and_rank1_equals_explicit_inverse():
    """algorithms-classic.md section 2: lambda 0.1, dim 2, phi [1,0], [1,0], [0,1], [1,1], zeroing off."""
    e3b = EllipticalEpisodicBonus(2, ridge=0.1, zero_first=False)
    sequence = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    bonuses = [e3b.step(torch.tensor([phi]), [t == 0])[0].item() for t, phi in enumerate(sequence)]
    np.testing.assert_allclose(bonuses, [10.0, 0.909091, 10.0, 1.385281], atol=1e-6)
    explicit = [explicit_bonus(sequence[:t], phi, 0.1) for t, phi in enumerate(sequence)]
    np.testing.assert_allclose(bonuses, explicit, rtol=1e-12)
    cov = 0.1 * np.eye(2) + sum(np.outer(p, p) for p in sequence)
    np.testing.assert_allclose(e3b.inverse[0].numpy(), np.linalg.inv(cov), rtol=1e-12)


def test_e3b_random_features_match_explicit_inverse_over_a_long_episode():
    rng = np.random.default_rng(0)
    phis = rng.normal(size=(50, 6))
    e3b = EllipticalEpisodicBonus(6, ridge=0.1, zero_first=False)
    got = [e3b.step(torch.from_numpy(phis[t : t + 1]), [t == 0])[0].item() for t in range(50)]
    want = [explicit_bonus(list(phis[:t]), list(phis[t]), 0.1) for t in range(50)]
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_e3b_reset_zeroing_and_inactive_rows():
    e3b = EllipticalEpisodicBonus(2, ridge=0.1)  # zero_first on (the E3B code)
    x, y = [1.0, 0.0], [0.0, 1.0]
    # both envs start: bonus forced to 0, but phi enters C
    assert e3b.step(torch.tensor([x, y]), [True, True]).tolist() == [0.0, 0.0]
    # C = 0.1 I + x x^T: x again gives 1 / 1.1; env 1 sees y again: 1 / 1.1 as well
    np.testing.assert_allclose(e3b.step(torch.tensor([x, y]), [False, False]), [1 / 1.1, 1 / 1.1], rtol=1e-12)
    # env 0 restarts: its C is I / 0.1 again (phi = y enters, bonus 0); env 1 keeps its history (y twice)
    assert e3b.step(torch.tensor([y, y]), [True, False])[0].item() == 0.0
    np.testing.assert_allclose(e3b.step(torch.tensor([x, y]), [False, False]), [10.0, 1 / 3.1], rtol=1e-12)
    # an inactive row is neither rewarded nor updated
    before = e3b.inverse[1].clone()
    out = e3b.step(torch.tensor([x, x]), [False, False], active=torch.tensor([True, False]))
    assert out[1].item() == 0.0 and torch.equal(e3b.inverse[1], before)
    with pytest.raises(ValueError, match="does not fit 2 envs x dim 2"):
        e3b.step(torch.ones(3, 2), [False] * 3)


# ---------------------------------------------------------------------------- RND, NovelD
def test_noveld_spec_cases():
    rnd_s, rnd_next = torch.tensor([1.0, 0.5]), torch.tensor([1.2, 0.3])
    torch.testing.assert_close(noveld(rnd_s, rnd_next, 0.1), torch.tensor([1.1, 0.25]))
    torch.testing.assert_close(noveld(rnd_s, rnd_next, 0.0), torch.tensor([1.2, 0.3]))
    assert noveld(torch.tensor([2.0]), torch.tensor([0.1]), 0.1).item() == 0.0  # max(0.1 - 0.2, 0)


def test_rnd_predictor_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    rnd = RNDBonus(obs_dim=8, feature_dim=16, hidden=(32, 32))
    batch = torch.randn(64, 8)
    target_before = [p.clone() for p in rnd.target.parameters()]
    optimizer = torch.optim.Adam(rnd.predictor.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = rnd.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])
    # the bonus is the per-row error norm: its square averages to the loss
    assert rnd.bonus(batch).pow(2).mean().item() == pytest.approx(rnd.loss(batch).item(), rel=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(target_before, rnd.target.parameters(), strict=True))


def test_inverse_dynamics_learns_which_action_moved_the_state():
    """s' = s + e_a: the action is recoverable from (phi(s), phi(s')) once phi is trained."""
    torch.manual_seed(0)
    model = InverseDynamics(obs_dim=4, feature_dim=8, action_space=gym.spaces.Discrete(4), hidden=(32,))
    obs = torch.randn(64, 4)
    actions = torch.randint(0, 4, (64,))
    next_obs = obs + torch.nn.functional.one_hot(actions, 4).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model.loss(obs, next_obs, actions).item()
    for _ in range(100):
        loss = model.loss(obs, next_obs, actions)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first > 1.2 and loss.item() < 0.1  # log 4 = 1.386 at chance
    continuous = InverseDynamics(4, 8, gym.spaces.Box(-1, 1, (2,)), hidden=(16,))
    assert continuous.loss(obs, next_obs, torch.zeros(64, 2)).shape == ()  # MSE for continuous actions


# ---------------------------------------------------------------------------- normalization
def test_running_std_matches_numpy_over_the_same_stream():
    rng = np.random.default_rng(1)
    norm, seen = RunningStd(), []
    assert norm.std == 0.0 and norm.normalize(torch.tensor([2.0])).item() == 2.0  # nothing seen: unchanged
    for size, mean, scale in [(1, 0.0, 1.0), (5, 3.0, 0.1), (17, -2.0, 4.0), (3, 10.0, 1.0), (40, 0.0, 0.01)]:
        batch = rng.normal(mean, scale, size=size)
        norm.update(torch.from_numpy(batch.reshape(-1, 1) if size % 2 else batch))
        seen.extend(batch)
        assert norm.std == pytest.approx(np.std(seen), rel=1e-12)
    x = torch.tensor([1.0, -4.0])
    torch.testing.assert_close(norm.normalize(x), x / np.std(seen))
    copy = RunningStd()
    copy.load_state_dict(norm.state_dict())
    assert copy.std == norm.std


# ---------------------------------------------------------------------------- pipeline
def pipeline(**fields) -> ExplorationBonus:
    config = GymConfig(**{**SMALL, **LEARNED, **fields})
    return ExplorationBonus(config, 1, gym.spaces.Discrete(2), 3, torch.device("cpu"))


def test_pipeline_combines_count_parts_as_the_spec():
    """combine_bonuses([.5,2,1], [1,.25,0]): product [0.5, 0.5, 0], sum [1.5, 2.25, 1.0]."""
    parts = {"global": np.array([[0.5, 2.0, 1.0]]), "episodic": np.array([[1.0, 0.25, 0.0]])}
    obs, done = torch.zeros(1, 3, 1), np.zeros((1, 3), dtype=bool)
    for mode, want in [("product", [0.5, 0.5, 0.0]), ("sum", [1.5, 2.25, 1.0])]:
        bonus, _, _ = pipeline(bonus=mode, bonus_norm="none", bonus_clip=0.0).rollout_bonus(obs, obs, done, parts)
        np.testing.assert_allclose(bonus[0], want, rtol=1e-6)
    # the E3B pipeline: divide by the running std (np.std of the values), then clip to [-1, 1]
    bonus, _, metrics = pipeline(bonus="product").rollout_bonus(obs, obs, done, parts)
    raw = np.array([0.5, 0.5, 0.0])
    np.testing.assert_allclose(bonus[0], np.clip(raw / raw.std(), -1, 1), rtol=1e-6)
    assert metrics["bonus/clipfrac"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"no count parts \['episodic'\]"):
        pipeline(bonus="product").rollout_bonus(obs, obs, done, {"global": parts["global"]})


def counter_vec_env(limit: int, **bonus) -> RewardVecEnv:
    def build():
        return ComponentWrapper(gym.wrappers.TimeLimit(Counter(), limit), "counter", (), "obs")

    vec = SyncVectorEnv([build], autoreset_mode=AutoresetMode.DISABLED)
    return RewardVecEnv(vec, ["reward"], **bonus)


def test_e3b_times_rnd_in_a_rollout_matches_a_reference(tmp_path):
    """Counter env (s_t = t, time limit 3): the bonus column equals E3B (reset state in C, explicit
    inverse) x RND, divided by np.std of the rollout's raw bonus, clipped; episode sums follow it."""
    env = counter_vec_env(3, bonus="product", episodic_bonus="e3b", global_bonus="rnd")
    config = GymConfig(output_dir=str(tmp_path), num_envs=1, num_steps=7, minibatches=1, tensorboard=False, **LEARNED)
    ppo = PPO(env, config)
    assert ppo.config.episodic_bonus == "e3b" and ppo.names == ["reward", "bonus"]
    ppo._obs = ppo.env.reset(seed=0)
    rollout = ppo.collect()
    encoder, rnd = ppo.exploration.modules["inverse_dynamics"], ppo.exploration.modules["rnd"]
    states = [0, 1, 2, 0, 1, 2, 0]  # s_t: a reset state [0] after each truncation at s = 3
    next_states = [1, 2, 3, 1, 2, 3, 1]  # the true s_{t+1}
    with torch.no_grad():
        phi = {s: encoder.features(torch.tensor([[float(s)]]))[0].double().tolist() for s in range(4)}
        rnd_b = {s: rnd.bonus(torch.tensor([[float(s)]])).item() for s in range(4)}
    raw = []
    for t, s_next in enumerate(next_states):
        episode_start = t - t % 3  # episodes are steps 0-2, 3-5, 6-
        history = [phi[states[episode_start]]] + [phi[next_states[i]] for i in range(episode_start, t)]
        raw.append(explicit_bonus(history, phi[s_next], 0.1) * rnd_b[s_next])
    want = np.clip(np.array(raw) / np.std(raw), -1, 1)
    np.testing.assert_allclose(rollout.rewards[:, 0, 1].numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(
        rollout.episode_returns[:, 1], [want[0:3].sum(), want[3:6].sum()], rtol=1e-5
    )  # the episode returns of "bonus" are sums of the trained-on bonus
    np.testing.assert_allclose(rollout.episode_returns[:, 0], [3.0, 3.0])  # extrinsic: unclipped, untouched
    assert rollout.metrics["bonus/raw_mean"] == pytest.approx(np.mean(raw), rel=1e-5)


def test_mixed_bonus_env_gives_count_parts_and_leaves_the_column_to_the_trainer():
    env = counter_vec_env(3, bonus="product", episodic_bonus="e3b", global_bonus="count")
    env.reset(seed=0)
    step = env.step(np.array([0]))
    assert set(step.bonus_parts) == {"global"} and step.bonus_parts["global"].tolist() == [1.0]
    assert step.rewards[0, 1] == 0.0
    learned = counter_vec_env(3, bonus="global", global_bonus="rnd")
    learned.reset(seed=0)
    assert learned.step(np.array([0])).bonus_parts == {} and learned.count_parts == ()


def test_reward_clip_clips_training_rewards_only(tmp_path):
    config = GymConfig(output_dir=str(tmp_path), env_id="deep-sea-treasure-v0", reward_clip=0.5, **SMALL)
    ppo = PPO(config.env_id, config)
    ppo._obs = ppo.env.reset(seed=0)
    rollout = ppo.collect()
    assert rollout.rewards.abs().max().item() == 0.5  # time is -1 every step
    assert rollout.episode_returns.size == 0 or rollout.episode_returns[:, 1].min() <= -1.0


# ---------------------------------------------------------------------------- PPO runs, checkpoints
@pytest.mark.parametrize("global_bonus", ["rnd", "noveld"])
def test_ppo_on_minigrid_with_e3b_bonus_logs_the_bonus_losses(tmp_path, global_bonus):
    config = GymConfig(
        env_id="MiniGrid-Empty-5x5-v0",
        output_dir=str(tmp_path),
        bonus="product",
        episodic_bonus="e3b",
        global_bonus=global_bonus,
        **SMALL,
        **LEARNED,
    )
    ppo = PPO(config.env_id, config).learn(64, progress=False)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        for key in ("losses/inverse_dynamics", "losses/rnd", "bonus/mean", "bonus/running_std", "reward/bonus/mean"):
            assert np.isfinite(record[key]), key
        assert record["losses/inverse_dynamics"] > 0 and record["losses/rnd"] > 0
        assert 0.0 <= record["reward/bonus/mean"] <= 1.0
    assert records[0]["bonus/episodic_mean"] > 0 and records[0]["bonus/global_mean"] > 0
    assert ppo.exploration.normalizer.count == 64
    assert not torch.equal(ppo.exploration.elliptical.inverse[0], torch.eye(8, dtype=torch.float64) * 10)


def _state_equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_state_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_state_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def test_checkpoint_restores_bonus_networks_optimizer_and_normalizer(tmp_path):
    config = GymConfig(
        env_id="MiniGrid-Empty-5x5-v0",
        output_dir=str(tmp_path),
        bonus="product",
        episodic_bonus="e3b",
        global_bonus="noveld",
        **SMALL,
        **LEARNED,
    )
    ppo = PPO(config.env_id, config).learn(64, progress=False)
    loaded = PPO.load(tmp_path)
    assert _state_equal(ppo.exploration.state_dict(), loaded.exploration.state_dict())
    assert ppo.exploration.optimizer.state_dict()["state"]  # Adam moments exist and were restored
    # same inputs -> the same bonus, and the same next training step
    obs = torch.rand(4, 2, 147) * 10
    done = np.array([[False, True], [False, False], [True, False], [False, False]])
    outputs = [p.exploration.rollout_bonus(obs, obs.roll(1, 0), done, {}) for p in (ppo, loaded)]
    np.testing.assert_array_equal(outputs[0][0], outputs[1][0])
    actions = torch.randint(0, 7, (4, 2))
    losses = [p.exploration.train(obs, obs.roll(1, 0), actions, torch.Generator().manual_seed(0)) for p in (ppo, loaded)]
    assert losses[0] == losses[1]
    assert _state_equal(ppo.exploration.state_dict(), loaded.exploration.state_dict())


def test_resumed_e3b_run_is_identical_to_an_uninterrupted_one(tmp_path):
    config = GymConfig(
        env_id="MiniGrid-Empty-5x5-v0",
        bonus="product",
        episodic_bonus="e3b",
        global_bonus="rnd",
        save_every=2,
        **SMALL,
        **LEARNED,
    )
    whole = PPO(config.env_id, GymConfig(**{**config.__dict__, "output_dir": str(tmp_path / "whole")}))
    whole.learn(128, progress=False)
    cut = PPO(config.env_id, GymConfig(**{**config.__dict__, "output_dir": str(tmp_path / "cut")}))
    cut.learn(128, progress=False, callback=lambda p, _: p.update < 2)
    resumed = PPO.load(tmp_path / "cut").learn(128, progress=False)

    def records(run):
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if not k.startswith("time/") and k != "charts/sps"} for x in lines]

    assert records("cut") == records("whole")
    assert _state_equal(resumed.exploration.state_dict(), whole.exploration.state_dict())


def test_bonus_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"episodic_bonus='icm' is not one of \['count', 'e3b'\]"):
        GymConfig(episodic_bonus="icm")
    with pytest.raises(ConfigError, match=r"global_bonus='ngu' is not one of \['count', 'rnd', 'noveld'\]"):
        from_mapping(GymConfig, {"global_bonus": "ngu"}, "config")
    with pytest.raises(ConfigError, match="e3b_ridge: must be > 0"):
        GymConfig(e3b_ridge=0.0)
    with pytest.raises(ConfigError, match="bonus_clip: must be >= 0"):
        GymConfig(bonus_clip=-1.0)
    with pytest.raises(ConfigError, match="bonus_hidden_sizes"):
        GymConfig(bonus_hidden_sizes=[])
