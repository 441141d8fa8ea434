"""Meta-World multi-task: success rates by hand, MT1 / custom-mt vector envs, per-task training metrics,
and the success evaluation checked against a hand-driven episode."""

from __future__ import annotations

import numpy as np
import pytest

from polyreward.gym import (
    PPO,
    EnvError,
    GymConfig,
    evaluate_success,
    make_vec_env,
    success_rate,
    task_id_from_obs,
)
from polyreward.gym.evaluate import task_metrics
from polyreward.runlog import read_metrics

pytest.importorskip("metaworld")

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*precision lowered:UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Constant.s. may be too high:UserWarning"),  # metaworld's scripted policy
]

REACH = {"env_id": "Meta-World/MT1", "env_kwargs": {"env_name": "reach-v3"}, "info_rewards": ["success"]}


def reach_policy():
    """Meta-World's scripted reach-v3 expert, as a batch policy ``obs[E, 39] -> actions[E, 4]``."""
    from metaworld.policies import SawyerReachV3Policy

    expert = SawyerReachV3Policy()
    return lambda obs: np.stack([expert.get_action(o) for o in obs]).astype(np.float32)


def test_success_rate_spec_case():
    mean, per_task = success_rate({"reach": [1, 1, 0, 1], "push": [0, 0, 1, 0]})
    assert per_task == {"reach": 0.75, "push": 0.25}
    assert mean == 0.5
    # the mean is over tasks, not over episodes: (1/1 + 0/3) / 2
    assert success_rate({"a": [True], "b": [0, 0, 0]}) == (0.5, {"a": 1.0, "b": 0.0})
    with pytest.raises(ValueError, match="task 'push' needs at least one 0/1 outcome"):
        success_rate({"reach": [1], "push": []})
    with pytest.raises(ValueError, match="task 'reach'"):
        success_rate({"reach": [2]})


def test_task_metrics_group_episodes_by_their_env_task():
    # episodes ended in envs 0, 1, 0, 2 (env 2 is a second copy of reach)
    metrics = task_metrics(
        ["reach", "push", "reach"], np.array([0, 1, 0, 2]), np.array([1.0, 2.0, 3.0, 5.0]), np.array([1, 0, 0, 1], bool)
    )
    assert metrics == {
        "task/reach/episodic_return": 3.0,  # (1 + 3 + 5) / 3
        "task/reach/episodes": 3.0,
        "task/push/episodic_return": 2.0,
        "task/push/episodes": 1.0,
        "task/reach/success": 2 / 3,
        "task/push/success": 0.0,
        "charts/success_rate": 1 / 3,
    }


def test_mt1_reach_spaces_and_truncation_after_500_steps():
    env = make_vec_env(GymConfig(num_envs=2, **REACH))
    assert env.names == ["reward", "success"] and env.task_names == ["reach-v3", "reach-v3"]
    assert env.single_observation_space.shape == (39,) and env.single_action_space.shape == (4,)
    obs = env.reset(seed=0)
    assert obs.shape == (2, 39)
    assert not np.allclose(obs[0, -3:], obs[1, -3:])  # copies draw their own goals (own seeds)
    rng = np.random.default_rng(0)
    for t in range(1, 501):
        step = env.step(rng.uniform(-1, 1, (2, 4)).astype(np.float32))
        assert not step.terminated.any()
        assert step.truncated.all() == (t == 500) and step.truncated.any() == (t == 500)
    assert step.episode_lengths.tolist() == [500, 500]
    assert not np.allclose(step.obs, step.final_obs)  # reset observations vs the true s_500
    env.close()


def test_custom_mt_one_hot_identifies_the_task():
    tasks = ["reach-v3", "button-press-topdown-v3", "push-v3"]
    config = GymConfig(
        env_id="Meta-World/custom-mt-envs",
        env_kwargs={"envs_list": tasks, "use_one_hot": True, "max_episode_steps": 5},
        num_envs=7,  # ignored: one env per task
    )
    env = make_vec_env(config)
    assert env.num_envs == 3 and env.task_names == tasks
    obs = env.reset(seed=0)
    assert obs.shape == (3, 39 + 3)
    np.testing.assert_array_equal(obs[:, 39:], np.eye(3))
    assert task_id_from_obs(obs, 3).tolist() == [0, 1, 2]
    for _ in range(5):  # the 5th step truncates; the reset observations keep their one-hot
        step = env.step(np.zeros((3, 4), np.float32))
    assert step.truncated.all()
    assert task_id_from_obs(step.obs, 3).tolist() == [0, 1, 2]
    assert task_id_from_obs(step.final_obs, 3).tolist() == [0, 1, 2]
    env.close()


def test_config_errors_name_the_field():
    with pytest.raises(EnvError, match=r"env_kwargs.env_name: unknown Meta-World task 'reach-v2'.*'reach-v3'"):
        make_vec_env(GymConfig(env_id="Meta-World/MT1", env_kwargs={"env_name": "reach-v2"}))
    with pytest.raises(EnvError, match=r"env_kwargs.envs_list: expected Meta-World task names"):
        make_vec_env(GymConfig(env_id="Meta-World/custom-mt-envs"))
    with pytest.raises(EnvError, match=r"\['vector_strategy'\] are set by the trainer.*'vector'"):
        make_vec_env(GymConfig(env_id="Meta-World/MT10", env_kwargs={"vector_strategy": "async"}))
    with pytest.raises(EnvError, match=r"'Meta-World/ML10-train' is not supported"):
        make_vec_env(GymConfig(env_id="Meta-World/ML10-train"))


def test_ppo_with_moe_trunk_on_two_tasks_logs_per_task_success(tmp_path):
    config = GymConfig(
        env_id="Meta-World/custom-mt-envs",
        env_kwargs={"envs_list": ["reach-v3", "button-press-topdown-v3"], "use_one_hot": True, "max_episode_steps": 16},
        info_rewards=["success"],
        weights={"success": 0.0},
        trunk="moe",
        moe_experts=3,
        num_steps=16,
        minibatches=2,
        epochs=1,
        output_dir=str(tmp_path),
        tensorboard=False,
        threads=1,  # tiny batches: one torch thread is ~10x faster than two on these shared CPUs
    )
    ppo = PPO(config.env_id, config).learn(3 * 32, progress=False)
    assert ppo.config.num_envs == 2 and ppo.global_step == 96
    records = read_metrics(tmp_path)
    assert len(records) == 3
    for record in records:  # every env truncates once per 16-step rollout
        for task in ("reach-v3", "button-press-topdown-v3"):
            assert record[f"task/{task}/episodes"] == 1.0
            assert record[f"task/{task}/success"] in (0.0, 1.0)
        assert record["losses/moe_balance"] > 0
        assert 0.0 <= record["charts/success_rate"] <= 1.0


def test_evaluate_success_matches_a_hand_driven_episode():
    config = GymConfig(num_envs=1, seed=3, **REACH)
    act = reach_policy()
    # hand-driven: the env never terminates on success, so find the first step whose success component is 1
    env = make_vec_env(config)
    obs, first_success = env.reset(seed=0), None
    for t in range(1, 501):
        step = env.step(act(obs))
        obs = step.obs
        if step.rewards[0, 1] == 1.0:
            first_success = t
            break
    env.close()
    assert first_success is not None and first_success < 500
    # evaluation: the same env (same seed, same goal) ends the episode at that step and counts a success
    result = evaluate_success(act, config, episodes=1)
    assert result.successes == {"reach-v3": [1]} and result.lengths == {"reach-v3": [first_success]}
    assert (result.mean, result.per_task) == (1.0, {"reach-v3": 1.0})
    # doing nothing never reaches a goal (hand start >= 0.2 from every reach goal, threshold 0.05)
    idle = evaluate_success(lambda obs: np.zeros((len(obs), 4), np.float32), config, episodes=1)
    assert idle.successes == {"reach-v3": [0]} and idle.lengths == {"reach-v3": [500]} and idle.mean == 0.0


def test_evaluate_success_splits_a_task_over_its_copies():
    result = evaluate_success(reach_policy(), GymConfig(num_envs=2, **REACH), episodes=3)
    assert result.successes == {"reach-v3": [1, 1, 1]} and result.per_task == {"reach-v3": 1.0}
    assert all(length < 500 for length in result.lengths["reach-v3"])
