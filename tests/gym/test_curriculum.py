"""Task curricula: the learning-progress distribution on a synthetic success history (hand-computed),
stage triggers, task-set envs that run the chosen task, short PPO runs and exact resume."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from polyreward.config import ConfigError
from polyreward.gym import PPO, GymConfig, make_vec_env
from polyreward.gym.curriculum import (
    LearningProgressSampler,
    StagedSampler,
    batch_success,
    learning_progress_probs,
    parse_stages,
    task_names,
)
from polyreward.runlog import read_metrics
from tests.gym.test_pvn import _one_thread  # noqa: F401  (autouse: one torch thread)

LAKE = "FrozenLake-v1"
EASY = {"env_id": LAKE, "name": "easy", "env_kwargs": {"is_slippery": False, "desc": ["SG", "HF"]}}
# the goal is walled in by holes: never solved, so no learning progress
NEVER = {"env_id": LAKE, "name": "never", "env_kwargs": {"is_slippery": False, "desc": ["SH", "HG"]}}
MID = {"env_id": LAKE, "name": "mid", "env_kwargs": {"is_slippery": False, "desc": ["SF", "HG"]}}
SMALL = {"num_envs": 2, "num_steps": 16, "minibatches": 2, "epochs": 2, "tensorboard": False, "threads": 1}
TASKS = {"tasks": [EASY, NEVER, MID], "task_success": "reward"}


def test_learning_progress_probs_by_hand():
    # LP = |fast - slow| = [0, 0.56, 0]; floor 0.1 over 3 tasks
    p = learning_progress_probs(np.array([0.0, 0.75, 1.0]), np.array([0.0, 0.19, 1.0]), floor=0.1)
    np.testing.assert_allclose(p, [0.1 / 3, 0.9 + 0.1 / 3, 0.1 / 3])
    np.testing.assert_allclose(learning_progress_probs(np.zeros(4), np.zeros(4), 0.1), np.full(4, 0.25))  # no progress
    # forgetting counts as progress too (|.|)
    np.testing.assert_allclose(learning_progress_probs(np.array([0.2, 0.5]), np.array([0.6, 0.5]), 0.0), [1.0, 0.0])


def test_learning_progress_sampler_on_a_synthetic_success_history():
    """Task 0 never succeeds, task 1 starts succeeding, task 2 always succeeds; task 3 is never seen."""
    sampler = LearningProgressSampler(4, fast=0.5, slow=0.1, floor=0.2)
    history = [[0, 0, 1], [0, 1, 1], [0, 1, 1]]  # per update: mean success of tasks 0..2
    seen = np.array([True, True, True, False])
    for success in history:
        sampler.observe(np.array([*success, 0.0]), seen, step=0)
    # task 1: first batch sets both EMAs to 0; then fast 0.5, 0.75 and slow 0.1, 0.19
    np.testing.assert_allclose(sampler.fast, [0, 0.75, 1, 0])
    np.testing.assert_allclose(sampler.slow, [0, 0.19, 1, 0])
    np.testing.assert_allclose(sampler.probs(), [0.05, 0.85, 0.05, 0.05])


def test_batch_success_counts_per_task():
    mean, seen = batch_success(np.array([0, 2, 2, 2]), np.array([True, True, False, False]), 3)
    np.testing.assert_allclose(mean, [1.0, 0.0, 1 / 3])
    assert seen.tolist() == [True, False, True]


def test_stages_move_on_by_steps_and_by_success():
    names = ["a", "b"]
    stages = parse_stages(
        [
            {"weights": {"a": 1}, "until_success": 0.6},
            {"weights": {"a": 1, "b": 3}, "until_steps": 100},
            {"weights": {"b": 1}},
        ],
        names,
    )
    sampler = StagedSampler(stages, rate=0.5)
    np.testing.assert_allclose(sampler.probs(), [1.0, 0.0])
    sampler.observe(np.array([0.0, 0.0]), np.array([True, False]), step=10)  # a: 0
    sampler.observe(np.array([1.0, 0.0]), np.array([True, False]), step=20)  # a: 0.5 < 0.6
    assert sampler.stage == 0
    sampler.observe(np.array([1.0, 0.0]), np.array([True, False]), step=30)  # a: 0.75 >= 0.6
    assert sampler.stage == 1
    np.testing.assert_allclose(sampler.probs(), [0.25, 0.75])
    sampler.observe(np.zeros(2), np.zeros(2, dtype=bool), step=99)
    assert sampler.stage == 1
    sampler.observe(np.zeros(2), np.zeros(2, dtype=bool), step=100)
    assert sampler.stage == 2
    np.testing.assert_allclose(sampler.probs(), [0.0, 1.0])
    sampler.observe(np.zeros(2), np.zeros(2, dtype=bool), step=10_000)
    assert sampler.stage == 2  # the last stage stays


def test_stage_and_task_errors():
    with pytest.raises(ConfigError, match=r"stages\[0\].weights: unknown tasks \['c'\]"):
        parse_stages([{"weights": {"c": 1}}], ["a", "b"])
    with pytest.raises(ConfigError, match=r"stages\[0\]: give exactly one"):
        parse_stages([{"weights": {"a": 1}}, {"weights": {"b": 1}}], ["a", "b"])
    with pytest.raises(ConfigError, match="repeat"):
        task_names([EASY, EASY])
    assert task_names([{"env_id": LAKE}, {"env_id": LAKE}, {"env_id": "CartPole-v1"}]) == [
        f"{LAKE}#0",
        f"{LAKE}#1",
        "CartPole-v1",
    ]
    with pytest.raises(ConfigError, match="stages"):
        GymConfig(task_sampler="staged", tasks=[EASY])
    with pytest.raises(ConfigError, match="needs a task list"):
        GymConfig(task_sampler="learning_progress")
    with pytest.raises(ConfigError, match="lp_slow"):
        GymConfig(lp_fast=0.1, lp_slow=0.2)
    with pytest.raises(ConfigError, match=r"observation_space"):
        make_vec_env(GymConfig(tasks=[EASY, {"env_id": LAKE, "env_kwargs": {"desc": ["SFF", "FFF", "FFG"]}}]))


def test_task_set_env_runs_the_chosen_task_and_reports_it():
    env = make_vec_env(GymConfig(**TASKS, num_envs=3, minibatches=1))
    assert env.task_set == ["easy", "never", "mid"] and env.names == ["reward"]
    assert env.obs_dim == 4 + 3  # one-hot cell of the 2x2 lake + task one-hot
    env.task_chooser = lambda n: np.full(n, 2)  # always "mid"
    obs = env.reset(seed=0)
    assert (obs[:, 4:] == [0, 0, 1]).all()
    ended = []
    for _ in range(40):
        step = env.step(np.full(3, 2))  # right: "mid" has a frozen cell there, then down reaches the goal
        step = env.step(np.full(3, 1)) if not step.terminated.any() else step
        ended.extend(step.episode_tasks.tolist())
        assert (step.obs[:, 4:] == [0, 0, 1]).all()
    assert ended and set(ended) == {2}
    env.close()


def test_learning_progress_run_logs_probabilities_and_floors_the_unsolvable_task(tmp_path):
    config = GymConfig(**TASKS, **SMALL, task_sampler="learning_progress", lp_floor=0.3, output_dir=str(tmp_path))
    ppo = PPO(LAKE, config).learn(12 * 32, progress=False)
    records = read_metrics(tmp_path)
    last = records[-1]
    probs = [last[f"curriculum/p/{n}"] for n in ("easy", "never", "mid")]
    assert sum(probs) == pytest.approx(1.0)
    assert last["curriculum/success/never"] == 0.0
    assert last["curriculum/success/easy"] > 0  # a random walk finds the adjacent goal
    # "never" has no progress: it gets only the floor whenever another task progressed
    progressed = [r for r in records if r["curriculum/p/never"] < 1 / 3 - 1e-9]
    assert progressed, "no task ever showed learning progress"
    assert all(r["curriculum/p/never"] == pytest.approx(0.3 / 3) for r in progressed)
    assert ppo.curriculum is not None and ppo.env.task_chooser is not None


def test_staged_run_trains_only_the_stage_tasks_then_moves_on(tmp_path):
    stages = [{"weights": {"mid": 1}, "until_steps": 4 * 32}, {"weights": {"easy": 1, "never": 1}}]
    config = GymConfig(**TASKS, **SMALL, task_sampler="staged", stages=stages, output_dir=str(tmp_path))
    ppo = PPO(LAKE, config)
    tasks_per_update = []
    ppo.learn(8 * 32, progress=False, callback=lambda p, m: tasks_per_update.append(m["curriculum/stage"]))
    assert tasks_per_update == [0, 0, 0, 1, 1, 1, 1, 1]  # the stage switches once 128 steps are done
    rollout = ppo.collect()  # stage 1: only easy and never episodes, and sub-envs see their one-hot
    assert set(rollout.episode_tasks.tolist()) <= {0, 1}
    assert rollout.obs[-1, :, 4 + 2].sum() == 0  # no sub-env runs "mid" at the end


def test_curriculum_resume_is_bit_identical(tmp_path):
    config = GymConfig(**TASKS, **SMALL, task_sampler="learning_progress", save_every=2)
    whole = PPO(LAKE, dataclasses.replace(config, output_dir=str(tmp_path / "whole"))).learn(8 * 32, progress=False)
    first = PPO(LAKE, dataclasses.replace(config, output_dir=str(tmp_path / "cut")))
    first.learn(8 * 32, progress=False, callback=lambda ppo, _: ppo.update < 4)
    del first
    np.random.seed(7)
    torch.manual_seed(7)
    resumed = PPO.load(tmp_path / "cut").learn(8 * 32, progress=False)
    strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith("time/") and k != "charts/sps"} for r in rs]  # noqa: E731
    assert strip(read_metrics(tmp_path / "cut")) == strip(read_metrics(tmp_path / "whole"))
    np.testing.assert_array_equal(resumed.curriculum.sampler.fast, whole.curriculum.sampler.fast)
    assert resumed.curriculum.rng.bit_generator.state == whole.curriculum.rng.bit_generator.state
