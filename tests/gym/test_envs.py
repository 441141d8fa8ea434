"""Environments as named reward components: names, errors, flattening, info components, count bonuses."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from polyreward.config import ConfigError, from_mapping
from polyreward.gym import (
    ComponentWrapper,
    EnvError,
    EpisodicCount,
    GlobalCount,
    GymConfig,
    RewardVecEnv,
    make_vec_env,
)
from polyreward.shaping import combine_bonuses

pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered:UserWarning")


class Counter(gym.Env):
    """obs = [steps since reset]; reward 1 per step plus info["success"] = (t == 2); never terminates."""

    observation_space = gym.spaces.Box(0, 100, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], np.float32), 1.0, False, False, {"success": self.t == 2}


def counter_env(limit=3, info_keys=(), key_mode=None, bonus="none", num_envs=1) -> RewardVecEnv:
    def build():
        return ComponentWrapper(gym.wrappers.TimeLimit(Counter(), limit), "counter", info_keys, key_mode)

    vec = SyncVectorEnv([build] * num_envs, autoreset_mode=AutoresetMode.DISABLED)
    return RewardVecEnv(vec, ["reward", *info_keys], bonus=bonus)


def test_mo_env_components_are_named_from_the_env():
    env = make_vec_env(GymConfig(env_id="deep-sea-treasure-v0", num_envs=2))
    assert env.names == ["treasure", "time"]
    env.reset(seed=0)
    step = env.step(np.array([1, 1]))  # down from (0, 0): the 0.7 treasure after one step
    np.testing.assert_allclose(step.rewards, [[0.7, -1.0], [0.7, -1.0]], rtol=1e-6)
    assert step.terminated.all() and not step.truncated.any()
    np.testing.assert_allclose(step.episode_returns, [[0.7, -1.0], [0.7, -1.0]], rtol=1e-6)
    env.close()


def test_user_names_replace_defaults_and_must_match_the_reward_space():
    env = make_vec_env(GymConfig(env_id="deep-sea-treasure-v0", reward_names=["gold", "clock"], num_envs=1))
    assert env.names == ["gold", "clock"]
    env.close()
    with pytest.raises(EnvError) as err:
        make_vec_env(GymConfig(env_id="deep-sea-treasure-v0", reward_names=["a", "b", "c"]))
    message = str(err.value)
    assert "reward_names" in message and "['a', 'b', 'c']" in message and "(2,)" in message


def test_scalar_env_has_one_component_named_reward():
    env = make_vec_env(GymConfig(env_id="CartPole-v1", num_envs=2))
    assert env.names == ["reward"] and env.obs_dim == 4
    env.reset(seed=0)
    assert env.step(np.array([0, 1])).rewards.shape == (2, 1)
    env.close()


def test_unknown_env_id_lists_close_matches():
    with pytest.raises(EnvError, match=r"unknown environment 'deep-sea-treasur-v0'.*deep-sea-treasure-v0"):
        make_vec_env(GymConfig(env_id="deep-sea-treasur-v0"))


@pytest.mark.parametrize(
    ("env_id", "obs_dim"),
    [("four-room-v0", 14), ("resource-gathering-v0", 4), ("MiniGrid-Empty-5x5-v0", 7 * 7 * 3), ("FrozenLake-v1", 16)],
)
def test_observations_are_flat_float_vectors(env_id, obs_dim):
    env = make_vec_env(GymConfig(env_id=env_id, num_envs=2))
    obs = env.reset(seed=0)
    assert obs.shape == (2, obs_dim) and obs.dtype == np.float32
    if env_id == "FrozenLake-v1":  # Discrete observation -> one-hot
        np.testing.assert_array_equal(obs.sum(1), [1.0, 1.0])
    env.close()


def test_info_keys_become_components_and_a_missing_key_is_an_error():
    env = counter_env(info_keys=("success",))
    env.reset(seed=0)
    rewards = [env.step(np.array([0])).rewards[0].tolist() for _ in range(3)]
    assert env.names == ["reward", "success"]
    assert rewards == [[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]]
    bad = counter_env(info_keys=("is_success",))
    bad.reset(seed=0)
    with pytest.raises(EnvError, match=r"info_rewards: key 'is_success'.*\['success'\]"):
        bad.step(np.array([0]))


def test_truncation_keeps_the_true_final_observation():
    env = counter_env(limit=3)
    assert env.reset(seed=0).tolist() == [[0.0]]
    steps = [env.step(np.array([0])) for _ in range(3)]
    assert [s.truncated[0] for s in steps] == [False, False, True]
    assert not any(s.terminated[0] for s in steps)
    assert steps[2].final_obs.tolist() == [[3.0]]  # s_T, for the bootstrap V(s_T)
    assert steps[2].obs.tolist() == [[0.0]]  # the policy continues from the reset state
    assert steps[2].episode_lengths.tolist() == [3]


def test_next_step_autoreset_is_rejected():
    vec = SyncVectorEnv([lambda: ComponentWrapper(Counter(), "counter")])  # gymnasium's default: NEXT_STEP
    with pytest.raises(EnvError, match="autoreset_mode"):
        RewardVecEnv(vec, ["reward"])


def test_count_bonuses_match_the_spec_case():
    """algorithms-classic.md section 2: lifetime counts a:3, c:1; the episode visits a, b, a, c, a."""
    episodic, lifetime = EpisodicCount(1), GlobalCount({"a": 3, "c": 1})
    first, inv_sqrt = [], []
    for t, key in enumerate("abaca"):
        first.append(episodic.step([key], [t == 0])[0])
        inv_sqrt.append(lifetime.step([key])[0])
    assert first == [1, 1, 0, 1, 0]
    np.testing.assert_allclose(inv_sqrt, [0.5, 1.0, 0.447214, 0.707107, 0.408248], atol=1e-6)
    product = combine_bonuses(torch.tensor(inv_sqrt), torch.tensor(first), "product")
    np.testing.assert_allclose(product, [0.5, 1.0, 0.0, 0.707107, 0.0], atol=1e-6)


def test_bonus_component_in_the_env():
    """States 1, 2, 3 are new in every episode (episodic 1); their lifetime count grows per episode."""
    env = counter_env(limit=3, key_mode="obs", bonus="product")
    assert env.names == ["reward", "bonus"]
    env.reset(seed=0)
    bonus = [env.step(np.array([0])).rewards[0, 1] for _ in range(6)]
    np.testing.assert_allclose(bonus, [1, 1, 1, 2**-0.5, 2**-0.5, 2**-0.5], rtol=1e-6)
    episodic = counter_env(limit=3, key_mode="obs", bonus="episodic")
    episodic.reset(seed=0)
    assert [episodic.step(np.array([0])).rewards[0, 1] for _ in range(6)] == [1.0] * 6


def test_minigrid_agent_position_bonus():
    env = make_vec_env(GymConfig(env_id="MiniGrid-Empty-5x5-v0", num_envs=1, bonus="product", bonus_key="agent_pos"))
    env.reset(seed=0)
    turn_left = np.array([0])  # the position does not change: seen in this episode, no bonus
    assert env.step(turn_left).rewards[0, 1] == 0.0
    env.close()


def test_async_vector_env_gives_the_same_components():
    env = make_vec_env(GymConfig(env_id="deep-sea-treasure-v0", num_envs=2, vector="async"))
    try:
        env.reset(seed=0)
        step = env.step(np.array([1, 1]))
        assert env.names == ["treasure", "time"]
        np.testing.assert_allclose(step.rewards, [[0.7, -1.0], [0.7, -1.0]], rtol=1e-6)
    finally:
        env.close()


def test_config_errors_name_the_field_and_allowed_values():
    with pytest.raises(ConfigError, match=r"critic='double' is not one of \['multi', 'single'\]"):
        from_mapping(GymConfig, {"critic": "double"}, "config")
    with pytest.raises(ConfigError, match="minibatches: 3 does not divide"):
        GymConfig(num_envs=4, num_steps=128, minibatches=3)
    with pytest.raises(ConfigError, match="info_rewards / reward_names: component names \\['time'\\]"):
        make_vec_env(GymConfig(env_id="deep-sea-treasure-v0", info_rewards=["time"]))
