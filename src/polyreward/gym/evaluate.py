"""Evaluation of vector-reward policies: per-objective returns, Pareto fronts, 2-D hypervolume.

``evaluate(ppo, episodes=10) -> Evaluation`` (returns per episode and component);
``pareto_front(points) -> indices``; ``hypervolume_2d(points, ref)``; ``weight_sweep(config,
weight_vectors, total_steps)`` trains one policy per weight vector and keeps the non-dominated ones.
All objectives are maximized, as in MO-Gymnasium and MORL-Baselines.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from polyreward.gym.config import GymConfig, resolve_weights
from polyreward.gym.envs import RewardVecEnv, make_vec_env

Policy = Callable[[np.ndarray], np.ndarray]


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
    exploration bonus, sync, at most 8 envs) or a function ``obs[E, D] -> actions[E]``. Each env runs
    ``ceil(episodes / E)`` episodes from its own reset, so short episodes are not over-represented.
    """
    if episodes < 1:
        raise ValueError(f"evaluate: episodes must be >= 1, got {episodes}")
    act: Policy = (lambda obs: policy.predict(obs, deterministic)) if hasattr(policy, "predict") else policy
    owned = not isinstance(env, RewardVecEnv)
    if owned:
        config = env if isinstance(env, GymConfig) else getattr(policy, "config", None)
        if config is None:
            raise ValueError("evaluate: give env (a RewardVecEnv or GymConfig) for a plain policy function")
        n = min(episodes, 8)
        env = make_vec_env(dataclasses.replace(config, bonus="none", vector="sync", num_envs=n, minibatches=1))
    try:
        return _run_episodes(act, env, episodes, seed)
    finally:
        if owned:
            env.close()


def _run_episodes(act: Policy, env: RewardVecEnv, episodes: int, seed: int) -> Evaluation:
    quota = math.ceil(episodes / env.num_envs)
    per_env: list[list[tuple[np.ndarray, int]]] = [[] for _ in range(env.num_envs)]
    obs = env.reset(seed=seed)
    while min(len(done) for done in per_env) < quota:
        step = env.step(act(obs))
        for i, ret, length in zip(step.episode_envs, step.episode_returns, step.episode_lengths, strict=True):
            if len(per_env[i]) < quota:
                per_env[i].append((ret, int(length)))
        obs = step.obs
    finished = [episode for done in per_env for episode in done][:episodes]
    return Evaluation(list(env.names), np.stack([r for r, _ in finished]), np.array([length for _, length in finished]))


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
