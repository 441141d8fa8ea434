"""The gym trainer's ``shaping`` component (potential-based and naive), and a critic that must learn
the closed-form value 1/(1-gamma) of an endless reward stream cut by truncation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from polyreward.config import ConfigError
from polyreward.gym import PPO, GymConfig, evaluate, make_vec_env
from polyreward.gym.envs import REWARD_KEY, ComponentWrapper, make_env
from polyreward.gym.potentials import Shaping
from polyreward.shaping import potential_shaping

GAMMA = 0.9
# MiniGrid-Empty-5x5: the agent starts at (1, 1) facing east, the goal is at (3, 3); actions 0 left, 1 right, 2 forward
TO_GOAL = [2, 2, 1, 2, 2]


def _distance_potential(pos) -> float:
    return -(abs(pos[0] - 3) + abs(pos[1] - 3)) / 10  # width + height = 10


def _shaped_episode(mode: str, terminal: str = "zero", actions=TO_GOAL, **env_kwargs):
    env = ComponentWrapper(
        make_env("MiniGrid-Empty-5x5-v0", env_kwargs),
        "MiniGrid-Empty-5x5-v0",
        shaping=Shaping(mode, "minigrid_goal_distance", GAMMA, terminal),
    )
    env.reset(seed=0)
    positions, shaping, terminated = [tuple(env.unwrapped.agent_pos)], [], []
    for action in actions:
        _, _, term, trunc, info = env.step(action)
        positions.append(tuple(env.unwrapped.agent_pos))
        shaping.append(info[REWARD_KEY][-1])
        terminated.append(term)
        if term or trunc:
            break
    return positions, np.array(shaping), np.array(terminated)


@pytest.mark.parametrize("terminal", ["zero", "keep"])
def test_pbrs_component_equals_the_library_formula(terminal):
    positions, shaping, terminated = _shaped_episode("pbrs", terminal)
    assert terminated[-1] and positions[-1] == (3, 3)
    phis = torch.tensor([_distance_potential(p) for p in positions], dtype=torch.float64)
    expected = potential_shaping(
        torch.zeros(len(shaping), dtype=torch.float64), phis, torch.tensor(terminated), GAMMA, terminal
    )
    np.testing.assert_allclose(shaping, expected.numpy(), atol=1e-12)


def test_pbrs_discounted_sum_telescopes_to_minus_the_start_potential():
    positions, shaping, _ = _shaped_episode("pbrs")
    discounted = sum(GAMMA**t * f for t, f in enumerate(shaping))
    assert discounted == pytest.approx(-_distance_potential(positions[0]))  # = 0.4, whatever the path


def test_naive_progress_pays_the_potential_itself_and_truncation_keeps_phi():
    positions, shaping, _ = _shaped_episode("naive")
    np.testing.assert_allclose(shaping, [_distance_potential(p) for p in positions[1:]])
    positions, shaping, terminated = _shaped_episode("pbrs", actions=[2, 2, 2], max_steps=2)  # truncated at step 2
    assert not terminated.any() and len(shaping) == 2
    last = GAMMA * _distance_potential(positions[2]) - _distance_potential(positions[1])
    assert shaping[-1] == pytest.approx(last)  # not zeroed: the episode was cut, not finished


def test_shaping_config_is_checked():
    with pytest.raises(ConfigError, match="give a potential exactly when shaping"):
        GymConfig(shaping="pbrs")
    with pytest.raises(ConfigError, match=r"did you mean \['minigrid_goal_distance'\]"):
        make_vec_env(GymConfig(env_id="MiniGrid-Empty-5x5-v0", shaping="pbrs", shaping_potential="minigrid_goal_distanse"))
    with pytest.raises(ConfigError, match="cannot import 'no_such_module:phi'"):
        make_vec_env(GymConfig(env_id="MiniGrid-Empty-5x5-v0", shaping="pbrs", shaping_potential="no_such_module:phi"))


def test_ppo_trains_with_a_shaping_component_but_scores_the_task(tmp_path):
    config = GymConfig(
        env_id="MiniGrid-Empty-5x5-v0",
        shaping="pbrs",
        shaping_potential="polyreward.gym.potentials:minigrid_goal_distance",
        num_envs=2,
        num_steps=64,
        minibatches=2,
        epochs=1,
        threads=1,
        output_dir=str(tmp_path),
    )
    ppo = PPO(config.env_id, config).learn(256, progress=False)
    assert ppo.names == ["reward", "shaping"] and ppo.model.critic_head.out_features == 2
    result = evaluate(ppo, episodes=2)
    assert result.names == ["reward"]  # evaluation drops the shaping, as it drops the bonus


class ConstantReward(gym.Env):
    """Reward 1 every step, one observation, never terminates (a time limit truncates it)."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 1.0, False, False, {}


gym.register("polyreward-test/ConstantReward-v0", entry_point=ConstantReward, max_episode_steps=20)


def test_critic_learns_one_over_one_minus_gamma_through_truncations(tmp_path):
    """Episodes of 20 steps cut by truncation: bootstrapping from V(s_T) makes V = 1 / (1 - gamma) = 10
    the fixed point; treating truncation as termination would pull V to the 20-step mean (~8.2)."""
    config = GymConfig(
        env_id="polyreward-test/ConstantReward-v0",
        gamma=GAMMA,
        lam=0.95,
        lr=0.01,
        anneal_lr=False,
        num_envs=2,
        num_steps=32,
        minibatches=2,
        clip_value=False,
        critic_norm="none",
        threads=1,
        output_dir=str(tmp_path),
    )
    ppo = PPO(config.env_id, config).learn(64 * 60, progress=False)
    value = float(ppo.model.value(torch.zeros(1, 1)).detach()[0, 0])
    assert value == pytest.approx(1 / (1 - GAMMA), abs=0.3)
