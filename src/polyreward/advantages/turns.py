"""MatchTIR dual-level advantage: trajectory-level and turn-level signals fused (arXiv 2601.10712)."""

from __future__ import annotations

import torch
from torch import Tensor

from polyreward.advantages.registry import AdvantageResult, register
from polyreward.batch import RewardBatch
from polyreward.groups import Singleton, group_normalize


def discounted_turn_returns(turn_rewards: Tensor, turn_mask: Tensor, lam: float) -> Tensor:
    """``G[i, t] = sum_{k >= t} lam^(k - t) r[i, k]`` over existing turns; 0 at padding.

    Shapes: ``turn_rewards[N, T]``, ``turn_mask[N, T]`` -> ``[N, T]``. Vectorized as one matmul
    with the ``[T, T]`` upper-triangular discount matrix.
    """
    t = torch.arange(turn_rewards.shape[1], device=turn_rewards.device)
    lag = (t[:, None] - t[None, :]).to(turn_rewards.dtype)  # [k, t] = k - t
    discount = torch.where(lag >= 0, lam ** lag.clamp_min(0), torch.zeros_like(lag))
    rewards = torch.where(turn_mask, turn_rewards, torch.zeros_like(turn_rewards))
    return torch.where(turn_mask, rewards @ discount, torch.zeros_like(rewards))


def dual_level_advantage(
    turn_rewards: Tensor,
    turn_mask: Tensor,
    group_index: Tensor,
    num_groups: int,
    lam: float = 0.9,
    eps: float = 1e-6,
    singleton: Singleton = "raw",
) -> tuple[Tensor, Tensor, Tensor]:
    """``A[i, t] = (A_traj[i] + A_turn[i, t]) / 2``.

    - ``A_traj = gnorm(sum_t r[i, t])`` within the prompt's group;
    - ``A_turn[i, t] = gnorm(G[i, t])`` within the group of (prompt, turn index t), over the samples
      that have a turn t, with ``G`` the ``lam``-discounted return from turn t on.
    ``singleton="raw"`` is MatchTIR's (verl's) mean 0 / std 1 for a lone entry.
    Shapes: ``turn_rewards[N, T]``, ``turn_mask[N, T]`` -> ``(advantages[N, T], traj[N], turn[N, T])``.
    """
    returns = discounted_turn_returns(turn_rewards, turn_mask, lam)
    totals = torch.where(turn_mask, turn_rewards, torch.zeros_like(turn_rewards)).sum(-1)
    traj = group_normalize(totals, group_index, num_groups, eps, singleton=singleton)
    per_turn = torch.where(turn_mask, returns, torch.full_like(returns, float("nan")))
    turn = group_normalize(per_turn, group_index, num_groups, eps, singleton=singleton)
    fused = torch.where(turn_mask, (traj[:, None] + turn) / 2, torch.zeros_like(turn))
    return fused, traj, turn


@register("dual_level")
def dual_level(batch: RewardBatch, *, lam: float = 0.9, eps: float = 1e-6, singleton: Singleton = "raw") -> AdvantageResult:
    """Per-turn advantages ``[N, T]`` from ``batch.turn_rewards`` (the trajectory score is their sum)."""
    if batch.turn_rewards is None:
        raise ValueError("dual_level: needs RewardBatch.turn_rewards [N, T] (per-turn rewards of each sample)")
    adv, traj, turn = dual_level_advantage(
        batch.turn_rewards, batch.turn_mask, batch.group_index, batch.num_groups, lam, eps, singleton
    )
    return AdvantageResult(advantages=adv, level="turn", mask=batch.turn_mask, extras={"trajectory": traj, "turn": turn})
