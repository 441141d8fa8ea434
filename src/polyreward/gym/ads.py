"""Automatic Discount Scheduling (Liu et al., *Imitation Learning from Observation with Automatic Discount
Scheduling*, ICLR 2024, arXiv 2310.07433; code ``dwjshift/IL_ADS``, ``IL/modules/ads.py``).

ADS is for imitation from observation: the agent is rewarded for matching expert demonstrations (an
optimal-transport or other observation-matching reward), and later rewards must not pull the agent
before it has learned the early part of the task. A progress index ``k`` (in expert time steps) sets
the discount ``γ = exp(ln(α) / k)`` (so ``γ^k = α``), and ``k`` only grows while the agent's first
``k`` frames follow the demonstrations in order about as well as demonstrations follow each other.

"In order" is measured with cost matrices: for agent frames ``x_0..x_{k-1}`` and demo frames
``y_0..y_{k-1}``, each ``x_i`` is matched to its nearest demo frame among the first ``k``
(``argmin_j C[i, j]``), and the score is the length of the longest strictly increasing subsequence
(LIS) of these positions. Shapes: demos and trajectories ``[T, D]`` (``T`` frames of ``D`` features;
pixels go through an encoder first), cost matrices ``[T_agent, T_demo]``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from polyreward.config import ConfigError

if TYPE_CHECKING:
    from polyreward.gym.config import GymConfig

Metric = Literal["euclidean", "cosine"]


def lis_length(seq: Sequence[int] | Tensor | np.ndarray) -> int:
    """Length of the longest strictly increasing subsequence of ``seq[n]``, in ``O(n log n)``.

    Patience sorting: ``tails[l]`` is the smallest possible last element of an increasing
    subsequence of length ``l + 1``; ``bisect_left`` makes equal elements replace, not extend
    (strict). The empty sequence has length 0 (the IL_ADS O(n²) loop returns 1 there).
    """
    tails: list = []
    for x in np.asarray(seq).tolist():
        pos = bisect.bisect_left(tails, x)
        if pos == len(tails):
            tails.append(x)
        else:
            tails[pos] = x
    return len(tails)


def ads_gamma(alpha: float, k: int) -> float:
    """``γ = exp(ln(α) / k)``, the discount whose ``k``-step weight is ``α`` (ADS's mapping function)."""
    if not 0.0 < alpha < 1.0 or k < 1:
        raise ValueError(f"ads_gamma: need 0 < alpha < 1 and k >= 1, got alpha={alpha}, k={k}")
    return math.exp(math.log(alpha) / k)


def cost_matrix(x: Tensor, y: Tensor, metric: Metric = "euclidean") -> Tensor:
    """``x[T1, D], y[T2, D] -> C[T1, T2]``: ``||x_i - y_j||_2`` (``"euclidean"``, for state features) or
    ``1 - cos(x_i, y_j)`` (``"cosine"``, for encoded pixels), as in IL_ADS ``rewarder.py``."""
    x, y = x.float(), y.float()
    if metric == "euclidean":
        return torch.cdist(x, y)
    if metric == "cosine":
        return 1.0 - (x @ y.T) / (x.norm(dim=1)[:, None] * y.norm(dim=1)[None, :])
    raise ValueError(f"cost_matrix: metric={metric!r} is not one of ['euclidean', 'cosine']")


def match_positions(cost: Tensor, k: int) -> Tensor:
    """``cost[T1, T2] -> [min(k, T1)]``: for each of the first ``k`` rows, the first column index of the
    minimum among the first ``k`` columns (``cost[:k, :k].argmin(1)``)."""
    return cost[:k, :k].argmin(dim=1)


def prefix_match_positions(cost: Tensor) -> Tensor:
    """``cost[T1, T2] -> P[T1, T2]`` with ``P[i, c] = argmin_{j <= c} cost[i, j]`` (first minimum), so
    ``match_positions(cost, k) == P[:k, k - 1]`` for every ``k`` at once.

    The running argmin moves to column ``j`` only where ``cost[i, j]`` is strictly below every
    earlier entry of its row; the last such column up to ``c`` is the first-occurrence argmin.
    """
    earlier_min = torch.cummin(cost, dim=1).values
    before = torch.cat([torch.full_like(cost[:, :1], float("inf")), earlier_min[:, :-1]], dim=1)
    columns = torch.arange(cost.shape[1], device=cost.device).expand_as(cost)
    records = torch.where(cost < before, columns, torch.zeros_like(columns))
    return torch.cummax(records, dim=1).values


def prefix_lis_scores(cost: Tensor) -> np.ndarray:
    """``cost[T1, T2] -> [min(T1, T2)]``: entry ``k - 1`` is ``lis_length(match_positions(cost, k))``."""
    positions = prefix_match_positions(cost).cpu().numpy()
    return np.array([lis_length(positions[:k, k - 1]) for k in range(1, min(cost.shape) + 1)], dtype=np.float64)


def reference_scores(demos: Sequence[Tensor], percentile: float = 50.0, metric: Metric = "euclidean") -> np.ndarray:
    """``ref[k - 1]``: the ``percentile`` (numpy, linear) over ordered demo pairs ``(i, j)``, ``i != j``, of
    the prefix LIS score of demo ``i`` matched against demo ``j``; shape ``[min_i T_i]``.

    The expected in-order match length of an expert against another expert (IL_ADS ``init_demos``).
    """
    if len(demos) < 2:
        raise ValueError(f"reference_scores: need at least 2 demonstrations to form pairs, got {len(demos)}")
    length = min(int(d.shape[0]) for d in demos)
    scores = [
        prefix_lis_scores(cost_matrix(a, b, metric))[:length]
        for i, a in enumerate(demos)
        for j, b in enumerate(demos)
        if i != j
    ]
    return np.percentile(np.stack(scores), percentile, axis=0)


def match_score(costs: Sequence[Tensor], k: int, percentile: float = 90.0) -> float:
    """The ``percentile`` over cost matrices ``[T_agent, T_demo]`` (one per (agent trajectory, demo)
    pair) of ``lis_length(match_positions(cost, k))`` (IL_ADS ``update``)."""
    if not costs:
        raise ValueError("match_score: no cost matrices (no agent trajectories or no demos)")
    return float(np.percentile([lis_length(match_positions(c, k)) for c in costs], percentile))


def advance_progress(
    progress: int,
    costs: Sequence[Tensor],
    ref: np.ndarray,
    horizon: int,
    threshold: float = 0.9,
    max_delta: int = 5,
    percentile: float = 90.0,
) -> tuple[int, float, float]:
    """One ADS update: ``(new_progress, match, ref_score)``.

    Up to ``max_delta`` times: ``match = match_score(costs, k)``; if ``k < horizon`` and
    ``match >= int(threshold · ref[k - 1])`` then ``k += 1``, otherwise stop. The ``int`` truncation is
    the released code's. Returns the last compared ``match`` and ``ref[k - 1]``.
    """
    match, ref_k = float("nan"), float("nan")
    for _ in range(max_delta):
        match, ref_k = match_score(costs, progress, percentile), float(ref[progress - 1])
        if progress >= horizon or match < int(threshold * ref_k):
            break
        progress += 1
    return progress, match, ref_k


class ADSScheduler:
    """Holds the progress index ``k`` and the demos' reference scores; ``update(trajectories) -> γ``.

    ``demos``: expert observation sequences ``[T_i, D]`` (at least 2, each at least ``horizon`` long).
    Defaults are the released code's (``IL/cfgs/config.yaml``): ``alpha=0.2``, ``threshold=0.9``,
    ``progress_start=0.2``, ``max_delta=5``, ``ref_pct=50``, ``agent_pct=90``. The code calls ``update``
    after each evaluation round with the deterministic policy's episodes.
    """

    def __init__(
        self,
        horizon: int,
        alpha: float = 0.2,
        threshold: float = 0.9,
        progress_start: float = 0.2,
        max_delta: int = 5,
        ref_pct: float = 50.0,
        agent_pct: float = 90.0,
        *,
        demos: Sequence[Tensor],
        metric: Metric = "euclidean",
    ):
        self.horizon, self.alpha, self.threshold = int(horizon), float(alpha), float(threshold)
        self.max_delta, self.agent_pct, self.metric = int(max_delta), float(agent_pct), metric
        self.progress = int(progress_start * horizon)
        if not 1 <= self.progress <= self.horizon:
            raise ValueError(
                f"ADSScheduler: progress_start * horizon = {progress_start} * {horizon} gives no start index in [1, horizon]"
            )
        if self.max_delta < 1:
            raise ValueError(f"ADSScheduler: max_delta={max_delta} must be >= 1")
        ads_gamma(alpha, 1)  # validates alpha
        self.demos = [torch.as_tensor(d).float() for d in demos]
        short = [i for i, d in enumerate(self.demos) if d.shape[0] < self.horizon]
        if short:
            raise ValueError(f"ADSScheduler: demos {short} are shorter than horizon={horizon}")
        self.ref = reference_scores(self.demos, ref_pct, metric)
        self.metrics: dict[str, float] = {}

    @property
    def gamma(self) -> float:
        """The current discount ``exp(ln(α) / k)``."""
        return ads_gamma(self.alpha, self.progress)

    def costs(self, trajectories: Sequence[Tensor]) -> list[Tensor]:
        """One cost matrix ``[T_agent, T_demo]`` per (trajectory, demo) pair."""
        return [cost_matrix(torch.as_tensor(t).float(), d, self.metric) for t in trajectories for d in self.demos]

    def update(self, trajectories: Sequence[Tensor]) -> float:
        """Advance ``k`` from agent observation sequences ``[T, D]`` (episodes from their first frame; a
        shorter one simply matches fewer frames) and return the new ``γ``; ``self.metrics`` holds
        ``ads/progress``, ``ads/gamma``, ``ads/match_score``, ``ads/ref_score``."""
        self.progress, match, ref_k = advance_progress(
            self.progress, self.costs(trajectories), self.ref, self.horizon, self.threshold, self.max_delta, self.agent_pct
        )
        self.metrics = {
            "ads/progress": float(self.progress),
            "ads/gamma": self.gamma,
            "ads/match_score": match,
            "ads/ref_score": ref_k,
        }
        return self.gamma


def load_demos(path: str | Path, obs_dim: int) -> np.ndarray:
    """Expert observation trajectories ``[N, T, D]`` (float32) from a ``.npy`` file; ``N >= 2`` demos of
    ``T >= 1`` frames of the env's ``D = obs_dim`` features. Errors name the file and the expected shape."""
    path = Path(path)
    expected = f"expected an array [N >= 2 demos, T frames, D = {obs_dim} observation features]"
    if not path.is_file():
        raise ConfigError(f"ads_demos: {path} is not a file; {expected} saved with numpy.save")
    try:
        demos = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ConfigError(f"ads_demos: {path} is not a readable .npy file ({error}); {expected}") from error
    if demos.ndim != 3 or demos.shape[0] < 2 or demos.shape[1] < 1 or demos.shape[2] != obs_dim:
        raise ConfigError(f"ads_demos: {path} holds an array of shape {list(demos.shape)}; {expected}")
    if not np.issubdtype(demos.dtype, np.number) or not np.isfinite(demos).all():
        raise ConfigError(f"ads_demos: {path} holds {demos.dtype} values that are not all finite numbers; {expected}")
    return demos.astype(np.float32)


class EpisodeRecorder:
    """Each env's observations ``s_0, s_1, ...`` of the episode in progress, carried across rollouts.

    ``record(obs[T, E, D], next_obs[T, E, D], done[T, E])`` appends ``s_t`` every step and, where an
    episode ends, its true final observation ``next_obs[t]``, and returns the finished episodes as
    ``[L + 1, D]`` tensors (env order within a step). Only the first ``max_frames`` frames of an
    episode are kept (ADS never compares more than its horizon).
    """

    def __init__(self, num_envs: int, max_frames: int):
        self.max_frames = int(max_frames)
        self.frames: list[list[np.ndarray]] = [[] for _ in range(num_envs)]

    def record(self, obs: Tensor, next_obs: Tensor, done: np.ndarray) -> list[Tensor]:
        obs, next_obs = np.asarray(obs), np.asarray(next_obs)
        finished = []
        for t in range(obs.shape[0]):
            for e, frames in enumerate(self.frames):
                if len(frames) < self.max_frames:
                    frames.append(obs[t, e].copy())
                if done[t, e]:
                    if len(frames) < self.max_frames:
                        frames.append(next_obs[t, e].copy())
                    finished.append(torch.from_numpy(np.stack(frames)))
                    self.frames[e] = []
        return finished

    def state_dict(self) -> list[np.ndarray | None]:
        return [np.stack(frames) if frames else None for frames in self.frames]

    def load_state_dict(self, state: list[np.ndarray | None]) -> None:
        if len(state) != len(self.frames):
            raise ValueError(f"EpisodeRecorder: {len(state)} saved envs for {len(self.frames)} envs")
        self.frames = [[] if frames is None else list(frames) for frames in state]


class DiscountSchedule:
    """ADS in the gym trainer: an :class:`ADSScheduler` on the demos of ``config.ads_demos`` and an
    :class:`EpisodeRecorder` that feeds it the training episodes of every rollout.

    ``gamma``: the discount the advantages use; ``observe(obs, next_obs, done) -> metrics`` after each
    rollout. The released code updates from evaluation episodes of the deterministic policy; here the
    finished training episodes of the rollout are used (no extra env steps).
    """

    def __init__(self, scheduler: ADSScheduler, num_envs: int):
        self.scheduler = scheduler
        self.recorder = EpisodeRecorder(num_envs, scheduler.horizon)

    @classmethod
    def from_config(cls, config: GymConfig, obs_dim: int, num_envs: int) -> DiscountSchedule:
        """Load ``config.ads_demos`` (checked against ``obs_dim``) and build the scheduler from the
        ``ads_*`` fields; ``ads_horizon = 0`` means the demos' length."""
        demos = load_demos(config.ads_demos, obs_dim)
        horizon = config.ads_horizon or demos.shape[1]
        if horizon > demos.shape[1]:
            raise ConfigError(
                f"ads_horizon: {horizon} is longer than the demos in {config.ads_demos} ({demos.shape[1]} frames)"
            )
        if int(config.ads_progress_start * horizon) < 1:
            raise ConfigError(
                f"ads_progress_start: {config.ads_progress_start} * horizon {horizon} gives no start index >= 1; raise it"
            )
        scheduler = ADSScheduler(
            horizon,
            config.ads_alpha,
            config.ads_threshold,
            config.ads_progress_start,
            config.ads_max_delta,
            config.ads_ref_pct,
            config.ads_agent_pct,
            demos=list(torch.from_numpy(demos)),
            metric=config.ads_metric,
        )
        return cls(scheduler, num_envs)

    @property
    def gamma(self) -> float:
        return self.scheduler.gamma

    def observe(self, obs: Tensor, next_obs: Tensor, done: np.ndarray) -> dict[str, float]:
        """Record a rollout (``obs[T, E, D]``, ``next_obs[T, E, D]``, ``done[T, E]``); if episodes ended,
        advance the progress from them. Metrics: ``ads/progress``, ``ads/gamma`` and, after an update,
        ``ads/match_score``, ``ads/ref_score``, ``ads/episodes``."""
        episodes = self.recorder.record(obs, next_obs, done)
        metrics = {}
        if episodes:
            self.scheduler.update(episodes)
            metrics = {**self.scheduler.metrics, "ads/episodes": float(len(episodes))}
        return {**metrics, "ads/progress": float(self.scheduler.progress), "ads/gamma": self.gamma}

    def state_dict(self) -> dict[str, Any]:
        return {"progress": self.scheduler.progress, "episodes": self.recorder.state_dict()}

    def load_state_dict(self, state: dict[str, Any], episodes: bool = True) -> None:
        """Restore :meth:`state_dict`; ``episodes=False`` keeps empty buffers (the envs were reset)."""
        self.scheduler.progress = int(state["progress"])
        if episodes:
            self.recorder.load_state_dict(state["episodes"])
