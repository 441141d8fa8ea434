"""Evaluation of vector-reward policies: per-objective returns, Pareto fronts, 2-D hypervolume.

``evaluate(ppo, episodes=10) -> Evaluation`` (returns per episode and component);
``pareto_front(points) -> indices``; ``hypervolume_2d(points, ref)``; ``weight_sweep(config,
weight_vectors, total_steps)`` trains one policy per weight vector and keeps the non-dominated ones.
All objectives are maximized, as in MO-Gymnasium and MORL-Baselines.
Multi-task success (Meta-World): ``success_rate(successes) -> (mean, per_task)``;
``evaluate_success(ppo, episodes=50) -> SuccessEvaluation``; ``task_metrics`` for training logs.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from polyreward.gym.config import GymConfig, resolve_weights
from polyreward.gym.envs import RewardVecEnv, make_vec_env

Policy = Callable[[np.ndarray], np.ndarray]
TASK_ONLY = {"bonus": "none", "shaping": "none", "shaping_potential": ""}  # evaluation scores the task's own rewards


@dataclasses.dataclass
class Evaluation:
    """``returns[N, K]``: undiscounted return of each of N episodes per component; ``lengths[N]``."""

    names: list[str]
    returns: np.ndarray
    lengths: np.ndarray

    @property
    def mean(self) -> dict[str, float]:
        """Mean return per component name."""
        return {name: float(v) for name, v in zip(self.names, self.returns.mean(0), strict=True)}

    def weighted(self, weights: dict[str, float] | Sequence[float]) -> float:
        """Mean of ``sum_k w_k R_k`` over episodes (weights by name, default 1.0, or one per component)."""
        w = np.asarray(resolve_weights(weights if isinstance(weights, dict) else list(weights), self.names))
        return float((self.returns @ w).mean())


def evaluate(
    policy,
    env: RewardVecEnv | GymConfig | None = None,
    episodes: int = 10,
    deterministic: bool = True,
    seed: int = 12345,
) -> Evaluation:
    """Run ``episodes`` full episodes and record each one's return per reward component.

    ``policy``: a :class:`~polyreward.gym.ppo.PPO` (then ``env`` defaults to its config without the
    exploration bonus and shaping, sync, at most 8 envs) or a function ``obs[E, D] -> actions[E]``. Each env runs
    ``ceil(episodes / E)`` episodes from its own reset, so short episodes are not over-represented.
    """
    if episodes < 1:
        raise ValueError(f"evaluate: episodes must be >= 1, got {episodes}")
    act = _as_policy(policy, deterministic)
    owned = not isinstance(env, RewardVecEnv)
    if owned:
        config = _eval_config(policy, env, "evaluate")
        n = min(episodes, 8)
        env = make_vec_env(dataclasses.replace(config, vector="sync", num_envs=n, minibatches=1, **TASK_ONLY))
    try:
        per_env = _episodes_per_env(act, env, [math.ceil(episodes / env.num_envs)] * env.num_envs, seed)
    finally:
        if owned:
            env.close()
    finished = [episode for done in per_env for episode in done][:episodes]
    return Evaluation(list(env.names), np.stack([r for r, _ in finished]), np.array([length for _, length in finished]))


def _as_policy(policy, deterministic: bool) -> Policy:
    """A PPO (anything with ``predict``) or a plain function ``obs[E, D] -> actions[E(, A)]``."""
    return (lambda obs: policy.predict(obs, deterministic)) if hasattr(policy, "predict") else policy


def _eval_config(policy, env: GymConfig | None, caller: str) -> GymConfig:
    config = env if isinstance(env, GymConfig) else getattr(policy, "config", None)
    if config is None:
        raise ValueError(f"{caller}: give env (a RewardVecEnv or GymConfig) for a plain policy function")
    return config


def _episodes_per_env(
    act: Policy, env: RewardVecEnv, quotas: Sequence[int], seed: int
) -> list[list[tuple[np.ndarray, int]]]:
    """Step every env until env i has finished ``quotas[i]`` episodes; per env, its episodes'
    ``(returns[K], length)`` in order (episodes past the quota are dropped)."""
    per_env: list[list[tuple[np.ndarray, int]]] = [[] for _ in range(env.num_envs)]
    obs = env.reset(seed=seed)
    while any(len(done) < quota for done, quota in zip(per_env, quotas, strict=True)):
        step = env.step(act(obs))
        for i, ret, length in zip(step.episode_envs, step.episode_returns, step.episode_lengths, strict=True):
            if len(per_env[i]) < quotas[i]:
                per_env[i].append((ret, int(length)))
        obs = step.obs
    return per_env


# ---------------------------------------------------------------- multi-task success (Meta-World)
def success_rate(successes: Mapping[str, Sequence[int | bool]]) -> tuple[float, dict[str, float]]:
    """``(mean, per_task)`` from 0/1 episode outcomes per task (Meta-World's ``evaluation``):
    ``per_task[t] = successes / episodes`` and the headline ``mean`` is the unweighted mean over tasks.

    ``success_rate({"reach": [1, 1, 0, 1], "push": [0, 0, 1, 0]}) == (0.5, {"reach": 0.75, "push": 0.25})``.
    """
    if not successes:
        raise ValueError("success_rate: no tasks")
    per_task = {}
    for task, outcomes in successes.items():
        values = np.asarray(outcomes, dtype=float)
        if values.size == 0 or not np.isin(values, (0.0, 1.0)).all():
            raise ValueError(f"success_rate: task {task!r} needs at least one 0/1 outcome, got {list(outcomes)}")
        per_task[task] = float(values.mean())
    return float(np.mean(list(per_task.values()))), per_task


def task_metrics(
    task_names: Sequence[str], episode_envs: np.ndarray, returns: np.ndarray, success: np.ndarray | None = None
) -> dict[str, float]:
    """Training metrics per task of the ``M`` episodes that ended, run in envs ``episode_envs[M]``
    (indices into ``task_names[E]``): ``task/<t>/episodic_return`` (mean of ``returns[M]``),
    ``task/<t>/episodes``, and with ``success[M]`` (bool) ``task/<t>/success`` plus their mean over
    the tasks present, ``charts/success_rate``."""
    by_task: dict[str, list[int]] = {}
    for m, env_index in enumerate(episode_envs):
        by_task.setdefault(task_names[int(env_index)], []).append(m)
    out = {}
    for task, rows in by_task.items():
        out[f"task/{task}/episodic_return"] = float(np.mean(returns[rows]))
        out[f"task/{task}/episodes"] = float(len(rows))
    if success is not None and by_task:
        mean, per_task = success_rate({task: success[rows].astype(int) for task, rows in by_task.items()})
        out.update({f"task/{task}/success": rate for task, rate in per_task.items()})
        out["charts/success_rate"] = mean
    return out


@dataclasses.dataclass
class SuccessEvaluation:
    """Success rates: ``per_task[t]`` and their mean ``mean``; ``successes[t]`` and ``lengths[t]``:
    the 0/1 outcome and the length of each of the task's episodes."""

    mean: float
    per_task: dict[str, float]
    successes: dict[str, list[int]]
    lengths: dict[str, list[int]]


def evaluate_success(
    policy,
    env: RewardVecEnv | GymConfig | None = None,
    episodes: int = 50,
    deterministic: bool = True,
    seed: int = 12345,
) -> SuccessEvaluation:
    """Success rate per task over ``episodes`` episodes per task (Meta-World's protocol: 50).

    An episode is a success if ``info["success"]`` was reached, i.e. its ``success`` component's
    return is > 0. A config (default: the PPO's) is built without the bonus, with ``success`` among
    the components and, for Meta-World ids, ``terminate_on_success=True`` (an episode ends at its
    first success, else at truncation). A given :class:`RewardVecEnv` must have a ``success``
    component; tasks come from ``env.task_names`` (one task ``"all"`` without them). A task run by
    several envs (MT1 copies) splits its episodes evenly over them, so quick successes are not
    over-represented as they would be in first-finished order.
    """
    from polyreward.gym.meta_world import is_metaworld

    if episodes < 1:
        raise ValueError(f"evaluate_success: episodes must be >= 1, got {episodes}")
    act = _as_policy(policy, deterministic)
    owned = not isinstance(env, RewardVecEnv)
    if owned:
        config = _eval_config(policy, env, "evaluate_success")
        kwargs = {**config.env_kwargs, "terminate_on_success": True} if is_metaworld(config.env_id) else config.env_kwargs
        info = list(config.info_rewards) + ([] if "success" in config.info_rewards else ["success"])
        env = make_vec_env(
            dataclasses.replace(config, vector="sync", env_kwargs=kwargs, info_rewards=info, minibatches=1, **TASK_ONLY)
        )
    try:
        if "success" not in env.names:
            raise ValueError(f"evaluate_success: the env has no 'success' component (components {env.names})")
        tasks = env.task_names or ["all"] * env.num_envs
        copies = Counter(tasks)
        per_env = _episodes_per_env(act, env, [math.ceil(episodes / copies[t]) for t in tasks], seed)
    finally:
        if owned:
            env.close()
    column = env.names.index("success")
    successes: dict[str, list[int]] = {}
    lengths: dict[str, list[int]] = {}
    for task, done in zip(tasks, per_env, strict=True):
        successes.setdefault(task, []).extend(int(ret[column] > 0) for ret, _ in done)
        lengths.setdefault(task, []).extend(length for _, length in done)
    successes = {t: v[:episodes] for t, v in successes.items()}
    lengths = {t: v[:episodes] for t, v in lengths.items()}
    mean, per_task = success_rate(successes)
    return SuccessEvaluation(mean, per_task, successes, lengths)


def pareto_front(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Indices of the non-dominated rows of ``points[M, D]`` (maximization), in input order.

    Row q dominates p when ``q >= p`` everywhere and ``q > p`` somewhere. Of identical rows only the
    first is kept.
    """
    p = np.asarray(points, dtype=float)
    if p.ndim != 2:
        raise ValueError(f"pareto_front: expected points[M, D], got shape {p.shape}")
    keep = []
    for i in range(len(p)):
        dominated = np.any(np.all(p >= p[i], axis=1) & np.any(p > p[i], axis=1))
        duplicate = np.any(np.all(p[:i] == p[i], axis=1))
        if not (dominated or duplicate):
            keep.append(i)
    return np.array(keep, dtype=np.int64)


def hypervolume_2d(points: np.ndarray | Sequence[Sequence[float]], ref: Sequence[float]) -> float:
    """Exact hypervolume of ``points[M, 2]`` (maximization) with respect to the reference point ``ref``.

    The area of the union of the boxes ``[ref, p]`` over points that strictly dominate ``ref``
    (others add nothing), as in the MORL hypervolume indicator (Zitzler & Thiele 1999).
    Sweep: sort by the first objective, descending, and add each new strip above the best second
    objective seen so far.
    """
    p = np.asarray(points, dtype=float).reshape(-1, 2) if len(points) else np.zeros((0, 2))
    r = np.asarray(ref, dtype=float)
    if r.shape != (2,):
        raise ValueError(f"hypervolume_2d: expected a 2-D reference point, got {ref!r}")
    p = p[np.all(p > r, axis=1)]
    area, best_y = 0.0, r[1]
    for x, y in sorted(p.tolist(), key=lambda q: (-q[0], -q[1])):
        if y > best_y:
            area += (x - r[0]) * (y - best_y)
            best_y = y
    return area


@dataclasses.dataclass
class SweepResult:
    """One row per weight vector: ``weights[W, K]`` and mean ``returns[W, K]`` of the greedy policy,
    ``front`` the indices of the non-dominated rows, ``hypervolume`` (2-D with ``ref`` only)."""

    names: list[str]
    weights: np.ndarray
    returns: np.ndarray
    front: np.ndarray
    hypervolume: float | None


def weight_sweep(
    config: GymConfig,
    weight_vectors: Sequence[Sequence[float]],
    total_steps: int | None = None,
    episodes: int = 10,
    ref: Sequence[float] | None = None,
    progress: bool = False,
) -> SweepResult:
    """Train one PPO per weight vector (run dirs ``output_dir/w<i>``) and evaluate each greedily.

    The Pareto front is taken over the mean per-component returns (bonus excluded).
    """
    from polyreward.gym.ppo import PPO

    rows, names = [], None
    for i, weights in enumerate(weight_vectors):
        run = dataclasses.replace(config, weights=list(weights), output_dir=str(Path(config.output_dir) / f"w{i}"))
        ppo = PPO(run.env_id, run).learn(total_steps, progress=progress)
        result = evaluate(ppo, episodes=episodes)
        ppo.env.close()
        names = result.names
        rows.append(result.returns.mean(0))
    returns = np.stack(rows)
    hv = hypervolume_2d(returns, ref) if ref is not None and returns.shape[1] == 2 else None
    return SweepResult(names, np.asarray(weight_vectors, dtype=float), returns, pareto_front(returns), hv)
