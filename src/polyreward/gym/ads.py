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
from typing import Literal

import numpy as np
import torch
from torch import Tensor

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
