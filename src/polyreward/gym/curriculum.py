"""Task curricula for multi-task training: which task each sub-env runs at its next episode.

A task set is a list of environment configurations (``GymConfig.tasks``: ``[{env_id, env_kwargs,
name}]``). Every sub-env is a :class:`TaskSwitchEnv` that holds one env per task and runs, from each
reset on, the task the trainer picked for it (``set_attr("next_task", ...)`` before the reset, so it
works for sync and async vector envs); with ``task_one_hot`` the task's one-hot is appended to the
observation. Samplers give the task distribution ``p[N]``:

- ``uniform``;
- ``learning_progress``: ``p ∝ |EMA_fast(success) − EMA_slow(success)|`` per task plus a uniform
  floor (Kanitscheider et al. 2021, *Multi-task curriculum learning in a complex, visual,
  hard-exploration domain: Minecraft*, arXiv 2106.14876; the "XLand-style" open-ended curriculum of
  the OEL Team 2021, arXiv 2107.12808, filters tasks by success probability instead);
- ``staged``: a list of stages, each a task mixture with a trigger to move on (env steps or a success
  threshold), as in staged multi-task RL schedules such as UniPic 2.0's PDTR (arXiv 2509.04548).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from polyreward.config import ConfigError
from polyreward.gym.config import GymConfig
from polyreward.gym.envs import EnvBuilder, RewardVecEnv, make_env, reward_names, vector_env
from polyreward.rewards.selection import learning_progress_probs as mixed_progress_probs

TASK_KEY = "polyreward/task"


# ------------------------------------------------------------------ pure math
def ema_update(ema: np.ndarray, value: np.ndarray, rate: float, seen: np.ndarray) -> np.ndarray:
    """``ema + rate * (value − ema)`` where ``seen[N]`` (tasks with episodes in this batch), else ``ema``."""
    return np.where(seen, ema + rate * (value - ema), ema)


def learning_progress_probs(fast: np.ndarray, slow: np.ndarray, floor: float) -> np.ndarray:
    """``p[N] = (1 − floor) · LP / Σ LP + floor / N`` with ``LP = |fast − slow|``; uniform while ``Σ LP = 0``."""
    progress = torch.from_numpy(np.abs(np.asarray(fast, dtype=np.float64) - np.asarray(slow, dtype=np.float64)))
    return mixed_progress_probs(progress, torch.ones(len(progress), dtype=torch.bool), floor).numpy()


def batch_success(tasks: np.ndarray, success: np.ndarray, num_tasks: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mean_success[N], seen[N])`` of the episodes ``tasks[M]`` (task index) with ``success[M]`` (bool)."""
    counts = np.bincount(tasks, minlength=num_tasks)
    wins = np.bincount(tasks, weights=success.astype(np.float64), minlength=num_tasks)
    seen = counts > 0
    return np.where(seen, wins / np.maximum(counts, 1), 0.0), seen


# ------------------------------------------------------------------ samplers
class TaskSampler:
    """The task distribution over ``N`` tasks, updated from finished episodes.

    ``probs() -> p[N]``; ``observe(mean_success[N], seen[N], step)`` once per update with the batch's
    per-task success; a fast success EMA (``rate``) is kept for metrics and stage triggers."""

    def __init__(self, num_tasks: int, rate: float = 0.1):
        self.num_tasks, self.rate = num_tasks, rate
        self.fast = np.zeros(num_tasks)
        self.started = np.zeros(num_tasks, dtype=bool)

    def probs(self) -> np.ndarray:
        return np.full(self.num_tasks, 1.0 / self.num_tasks)

    def observe(self, success: np.ndarray, seen: np.ndarray, step: int) -> None:
        # the first observation of a task sets its EMAs (no progress from the arbitrary start value)
        first = seen & ~self.started
        self.fast = np.where(first, success, ema_update(self.fast, success, self.rate, seen))
        self._observe(success, seen, first, step)
        self.started |= seen

    def _observe(self, success: np.ndarray, seen: np.ndarray, first: np.ndarray, step: int) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        vars(self).update(state)


class LearningProgressSampler(TaskSampler):
    """``p ∝ |EMA_fast − EMA_slow|`` of per-task success plus a uniform ``floor`` (Kanitscheider et al. 2021)."""

    def __init__(self, num_tasks: int, fast: float = 0.1, slow: float = 0.02, floor: float = 0.1):
        super().__init__(num_tasks, fast)
        self.slow_rate, self.floor = slow, floor
        self.slow = np.zeros(num_tasks)

    def _observe(self, success: np.ndarray, seen: np.ndarray, first: np.ndarray, step: int) -> None:
        self.slow = np.where(first, success, ema_update(self.slow, success, self.slow_rate, seen))

    def probs(self) -> np.ndarray:
        return learning_progress_probs(self.fast, self.slow, self.floor)


@dataclasses.dataclass(frozen=True)
class Stage:
    """A task mixture ``weights[N]`` and its trigger: ``until_steps`` (env steps in total) or
    ``until_success`` (mean fast-EMA success of the tasks with weight > 0); neither = the last stage."""

    weights: np.ndarray
    until_steps: int | None = None
    until_success: float | None = None


class StagedSampler(TaskSampler):
    """Stage ``s`` samples tasks from its mixture until its trigger fires, then stage ``s + 1`` starts."""

    def __init__(self, stages: Sequence[Stage], rate: float = 0.1):
        super().__init__(len(stages[0].weights), rate)
        self.stages, self.stage = list(stages), 0

    def probs(self) -> np.ndarray:
        w = self.stages[self.stage].weights
        return w / w.sum()

    def _observe(self, success: np.ndarray, seen: np.ndarray, first: np.ndarray, step: int) -> None:
        while self.stage < len(self.stages) - 1 and self._done(self.stages[self.stage], step):
            self.stage += 1

    def _done(self, stage: Stage, step: int) -> bool:
        if stage.until_steps is not None:
            return step >= stage.until_steps
        active = stage.weights > 0
        return bool(self.started[active].all() and self.fast[active].mean() >= stage.until_success)

    def state_dict(self) -> dict[str, Any]:
        return {"fast": self.fast.copy(), "started": self.started.copy(), "stage": self.stage}


def parse_stages(stages: Sequence[dict[str, Any]], names: Sequence[str]) -> list[Stage]:
    """``GymConfig.stages`` as :class:`Stage` s; errors name the stage, the field and the task names."""
    out = []
    for i, raw in enumerate(stages):
        where = f"stages[{i}]"
        unknown = sorted(set(raw) - {"weights", "until_steps", "until_success"})
        if unknown or not isinstance(raw.get("weights"), dict):
            raise ConfigError(f"{where}: expected {{weights: {{task: w}}, until_steps | until_success}}, got {raw!r}")
        bad = sorted(set(raw["weights"]) - set(names))
        if bad:
            raise ConfigError(f"{where}.weights: unknown tasks {bad}; the tasks are {list(names)}")
        weights = np.array([float(raw["weights"].get(n, 0.0)) for n in names])
        if (weights < 0).any() or weights.sum() <= 0:
            raise ConfigError(f"{where}.weights: need weights >= 0 with a positive sum, got {raw['weights']}")
        triggers = [k for k in ("until_steps", "until_success") if k in raw]
        last = i == len(stages) - 1
        if len(triggers) > 1 or (not triggers and not last):
            raise ConfigError(f"{where}: give exactly one of until_steps, until_success (only the last stage has none)")
        steps, success = raw.get("until_steps"), raw.get("until_success")
        out.append(Stage(weights, None if steps is None else int(steps), None if success is None else float(success)))
    return out


# ------------------------------------------------------------------ the env side
class TaskSwitchEnv(gym.Env):
    """One env per task configuration; each reset runs task ``next_task`` (set by the trainer through
    ``VectorEnv.set_attr``), or a uniformly drawn one when no trainer sets it (e.g. in evaluation).

    ``tasks``: ``(env_id, env_kwargs)`` pairs whose envs share observation and action spaces; with
    ``one_hot`` the observation is ``[obs, one_hot(task)]``. ``info["polyreward/task"]``: the task index.
    """

    def __init__(self, tasks: Sequence[tuple[str, dict[str, Any]]], one_hot: bool = True):
        self.envs = [make_env(env_id, kwargs) for env_id, kwargs in tasks]
        first = self.envs[0]
        for i, env in enumerate(self.envs[1:], start=1):
            for space in ("observation_space", "action_space"):
                if getattr(env, space) != getattr(first, space):
                    raise ConfigError(
                        f"tasks[{i}] ({tasks[i][0]}): {space} {getattr(env, space)} differs from tasks[0]'s "
                        f"{getattr(first, space)}; every task must share the spaces"
                    )
        self.one_hot = one_hot
        self.action_space = first.action_space
        base = first.observation_space
        extra = len(self.envs) if one_hot else 0
        low = np.concatenate([np.broadcast_to(base.low, base.shape), np.zeros(extra)]).astype(np.float32)
        high = np.concatenate([np.broadcast_to(base.high, base.shape), np.ones(extra)]).astype(np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        if getattr(first.unwrapped, "reward_space", None) is not None:  # a vector reward (MO-Gymnasium)
            self.reward_space = first.unwrapped.reward_space
        self.reward_names = getattr(first.unwrapped, "reward_names", None)
        self.task, self.next_task = 0, None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:  # seed every task's env once, so that later unseeded resets are reproducible
            for i, env in enumerate(self.envs):
                env.reset(seed=seed + 7919 * (i + 1))
        self.task = int(self.np_random.integers(len(self.envs))) if self.next_task is None else int(self.next_task)
        obs, info = self.envs[self.task].reset()
        info[TASK_KEY] = self.task
        return self._obs(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.envs[self.task].step(action)
        info[TASK_KEY] = self.task
        return self._obs(obs), reward, terminated, truncated, info

    def _obs(self, obs) -> np.ndarray:
        flat = np.asarray(obs, dtype=np.float32).reshape(-1)
        if not self.one_hot:
            return flat
        code = np.zeros(len(self.envs), dtype=np.float32)
        code[self.task] = 1.0
        return np.concatenate([flat, code])

    def close(self):
        for env in self.envs:
            env.close()


def task_names(tasks: Sequence[dict[str, Any]]) -> list[str]:
    """Each task's ``name``, else its ``env_id`` (``env_id#i`` where ids repeat); names must be unique."""
    ids = [t["env_id"] for t in tasks]
    names = [
        t.get("name") or (t["env_id"] if ids.count(t["env_id"]) == 1 else f"{t['env_id']}#{i}") for i, t in enumerate(tasks)
    ]
    if len(set(names)) != len(names):
        raise ConfigError(f"tasks: task names {names} repeat; give each task a unique 'name'")
    return names


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskSetBuilder(EnvBuilder):
    """Builds one :class:`TaskSwitchEnv` sub-env (picklable, for AsyncVectorEnv workers and snapshots)."""

    tasks: tuple[tuple[str, dict[str, Any]], ...]
    one_hot: bool = True

    def make(self) -> gym.Env:
        return TaskSwitchEnv(self.tasks, self.one_hot)


def make_task_vec_env(config: GymConfig, snapshots: Sequence[bytes] | None = None) -> RewardVecEnv:
    """``config.num_envs`` :class:`TaskSwitchEnv` s over ``config.tasks`` as a :class:`RewardVecEnv`
    whose ``task_set`` names the tasks (components: the first task's rewards + ``info_rewards``)."""
    names = task_names(config.tasks)
    tasks = tuple((t["env_id"], dict(t.get("env_kwargs") or {})) for t in config.tasks)
    probe = TaskSwitchEnv(tasks[:1], one_hot=False)
    try:
        own = reward_names(probe, tasks[0][0], config.reward_names)
    finally:
        probe.close()
    build = TaskSetBuilder(
        env_id=tasks[0][0],
        env_kwargs={},
        tasks=tasks,
        one_hot=config.task_one_hot,
    )
    env = vector_env([build] * config.num_envs, config, own, snapshots)
    env.task_set = names
    return env


# ------------------------------------------------------------------ the trainer side
class TaskCurriculum:
    """The gym trainer's curriculum: chooses each sub-env's next task (``env.task_chooser``) from the
    sampler's ``p`` with its own seeded generator, and updates the sampler from the rollout's episodes.

    Metrics: ``curriculum/p/<task>``, ``curriculum/success/<task>`` (fast EMA), ``curriculum/stage``.
    """

    def __init__(self, names: Sequence[str], sampler: TaskSampler, seed: int = 0):
        self.names, self.sampler = list(names), sampler
        self.rng = np.random.default_rng(seed)

    @classmethod
    def from_config(cls, config: GymConfig, env: RewardVecEnv) -> TaskCurriculum:
        names = task_names(config.tasks)
        if config.task_success not in env.names:
            raise ConfigError(
                f"task_success: {config.task_success!r} is not a reward component; the components are {env.names}"
            )
        if config.task_sampler == "learning_progress":
            sampler: TaskSampler = LearningProgressSampler(len(names), config.lp_fast, config.lp_slow, config.lp_floor)
        elif config.task_sampler == "staged":
            sampler = StagedSampler(parse_stages(config.stages, names), config.lp_fast)
        else:
            sampler = TaskSampler(len(names), config.lp_fast)
        curriculum = cls(names, sampler, config.seed)
        curriculum.success_index = env.names.index(config.task_success)
        env.task_chooser = curriculum.choose
        return curriculum

    def choose(self, n: int) -> np.ndarray:
        """``[n]`` task indices drawn from the sampler's ``p``."""
        return self.rng.choice(len(self.names), size=n, p=self.sampler.probs())

    def observe(self, episode_tasks: np.ndarray, episode_returns: np.ndarray, step: int) -> dict[str, float]:
        """Update the sampler from the episodes ``episode_tasks[M]`` with ``episode_returns[M, K]``
        (success: the ``task_success`` component's return > 0); returns the curriculum metrics."""
        success = episode_returns[:, self.success_index] > 0
        mean, seen = batch_success(episode_tasks.astype(np.int64), success, len(self.names))
        self.sampler.observe(mean, seen, step)
        p = self.sampler.probs()
        out = {f"curriculum/p/{n}": float(v) for n, v in zip(self.names, p, strict=True)}
        out.update({f"curriculum/success/{n}": float(v) for n, v in zip(self.names, self.sampler.fast, strict=True)})
        if isinstance(self.sampler, StagedSampler):
            out["curriculum/stage"] = float(self.sampler.stage)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.rng.bit_generator.state = state["rng"]
