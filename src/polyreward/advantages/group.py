"""Sum-then-normalize group estimators: GRPO, Dr.GRPO, RLOO, REINFORCE++ and directional (DPA).

Each first combines the K rewards into one score per sample, ``s = sum_k w_k r_k``, then compares
samples of the same prompt. Because every step is linear in the rewards, each estimator also
returns the additive share of every reward (``per_component``), which the diagnostics use.
NaN rewards count as 0 in the sum, and a sample whose rewards are all NaN is left out of its
group's statistics and gets advantage 0 (TRL 1.16's convention for unscorable completions).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from polyreward.advantages.registry import AdvantageResult, register
from polyreward.batch import RewardBatch
from polyreward.groups import batch_normalize_parts, group_mean, group_mean_std

Scale = Literal["group", "batch", "none"]
BatchNorm = Literal["sequence", "token"]


def _centred_parts(rewards: Tensor, weights: Tensor, group_index: Tensor, num_groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """Weighted rewards centred on their group mean, split by reward.

    Returns ``(parts[N, K], scores[N], group_size[N])``: ``parts.sum(-1) == scores - mean_g(scores)``;
    scores are NaN (and parts 0) for samples whose rewards are all NaN; ``group_size`` counts the
    scorable samples of each sample's group.
    """
    scorable = ~torch.isnan(rewards).all(-1)
    weighted = torch.nan_to_num(rewards, nan=0.0) * weights
    weighted = torch.where(scorable[:, None], weighted, torch.full_like(weighted, float("nan")))
    mean, count = group_mean(weighted, group_index, num_groups)
    parts = torch.nan_to_num(weighted - mean[group_index], nan=0.0)
    return parts, weighted.sum(-1), count[group_index, 0]


def grpo_advantage(
    rewards: Tensor, weights: Tensor, group_index: Tensor, num_groups: int, scale: Scale = "group", eps: float = 1e-4
) -> tuple[Tensor, Tensor]:
    """GRPO: ``A_i = (s_i - mean_g s) / (std_g s + eps)`` with ``s = sum_k w_k r_k`` (Shao et al. 2024).

    Args: ``rewards[N, K]``, ``weights[K]``, ``group_index[N]`` dense group ids.
    ``scale``: ``"group"`` divides by the group's unbiased std, ``"batch"`` by the std of all scores
    (TRL's ``scale_rewards="batch"``), ``"none"`` does not divide (Dr.GRPO).
    Returns ``(advantages[N], per_component[N, K])``. Groups with one scorable sample get 0.
    """
    parts, scores, group_size = _centred_parts(rewards, weights, group_index, num_groups)
    if scale == "group":
        _, std, _ = group_mean_std(scores, group_index, num_groups)
        denom = std[group_index] + eps
    elif scale == "batch":
        valid = scores[~torch.isnan(scores)]
        denom = (valid.std() if valid.numel() > 1 else valid.new_zeros(())) + eps
    else:
        denom = torch.ones((), dtype=parts.dtype, device=parts.device)
    parts = parts / (denom[:, None] if denom.dim() else denom)
    parts = torch.where((group_size > 1)[:, None], parts, torch.zeros_like(parts))
    return parts.sum(-1), parts


def rloo_advantage(rewards: Tensor, weights: Tensor, group_index: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """RLOO: ``A_i = s_i - mean_{j != i in g} s_j = G/(G-1) * (s_i - mean_g s)`` (Ahmadian et al. 2024).

    Returns ``(advantages[N], per_component[N, K])``; a group with one scorable sample gets 0.
    """
    parts, _, group_size = _centred_parts(rewards, weights, group_index, num_groups)
    factor = torch.where(group_size > 1, group_size / (group_size - 1).clamp_min(1), torch.zeros_like(group_size))
    parts = parts * factor[:, None]
    return parts.sum(-1), parts


def reinforce_pp_advantage(
    rewards: Tensor,
    weights: Tensor,
    group_index: Tensor,
    num_groups: int,
    baseline: Literal["none", "group"] = "none",
    eps: float = 1e-8,
    token_counts: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """REINFORCE++ (Hu et al. 2025): normalize ``s`` over the whole batch, no critic, no group std.

    ``baseline="group"`` subtracts the group mean first (REINFORCE++-baseline). The batch
    normalization is per sequence, or per token when ``token_counts[N]`` is given (verl's
    ``masked_whiten``). Returns ``(advantages[N], per_component[N, K])``.
    """
    parts, scores, _ = _centred_parts(rewards, weights, group_index, num_groups)
    scorable = ~torch.isnan(scores)
    if baseline == "none":
        parts = torch.nan_to_num(rewards, nan=0.0) * weights
    parts = batch_normalize_parts(parts, eps, token_counts, include=scorable)
    return parts.sum(-1), parts


def unit_direction(direction: Tensor) -> Tensor:
    """``direction[K] / ||direction||``; DPA's user preference is a unit vector (Wang et al. 2024)."""
    norm = direction.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise ValueError(f"directional: the preference direction must be finite and non-zero, got {direction.tolist()}")
    return direction / norm


def best_in_group(scores: Tensor, group_index: Tensor, num_groups: int) -> Tensor:
    """Index of the highest score in each group, ``[num_groups]`` (DPA rejection sampling picks it)."""
    best = torch.full((num_groups,), -torch.inf, dtype=scores.dtype, device=scores.device)
    best.scatter_reduce_(0, group_index, scores, reduce="amax")
    is_best = scores == best[group_index]
    position = torch.arange(len(scores), device=scores.device)
    first = torch.full((num_groups,), len(scores), dtype=torch.long, device=scores.device)
    return first.scatter_reduce_(0, group_index[is_best], position[is_best], reduce="amin")


def score_metrics(batch: RewardBatch, scores: Tensor) -> dict[str, float]:
    """Group health of ``scores[N]`` (or ``[N, K]``, one column per reward).

    ``zero_variance_groups``: fraction of groups with two or more scored samples where the score
    (every column) is constant, i.e. groups that give no learning signal;
    ``singleton_groups``: fraction of groups with at most one scored sample.
    """
    columns = scores if scores.dim() == 2 else scores[:, None]
    _, std, count = group_mean_std(columns, batch.group_index, batch.num_groups)
    compared = count > 1
    flat = ((std == 0) | ~compared).all(-1)
    has_pairs = compared.any(-1)
    return {
        "zero_variance_groups": float(flat[has_pairs].float().mean()) if has_pairs.any() else 0.0,
        "singleton_groups": float((~has_pairs).float().mean()),
    }


def _result(batch: RewardBatch, advantages: Tensor, parts: Tensor, scores: Tensor) -> AdvantageResult:
    return AdvantageResult(advantages=advantages, per_component=parts, metrics=score_metrics(batch, scores))


@register("grpo")
def grpo(batch: RewardBatch, *, scale: Scale = "group", eps: float = 1e-4) -> AdvantageResult:
    """GRPO on the weighted sum of rewards (TRL's ``sum_then_normalize``)."""
    adv, parts = grpo_advantage(batch.rewards, batch.weights, batch.group_index, batch.num_groups, scale, eps)
    return _result(batch, adv, parts, batch.weighted_sum())


@register("dr_grpo")
def dr_grpo(batch: RewardBatch) -> AdvantageResult:
    """Dr.GRPO (Liu et al. 2025): GRPO without the std division; its loss uses a constant normalizer."""
    adv, parts = grpo_advantage(batch.rewards, batch.weights, batch.group_index, batch.num_groups, "none")
    return _result(batch, adv, parts, batch.weighted_sum())


@register("rloo")
def rloo(batch: RewardBatch) -> AdvantageResult:
    """REINFORCE leave-one-out on the weighted sum of rewards."""
    adv, parts = rloo_advantage(batch.rewards, batch.weights, batch.group_index, batch.num_groups)
    return _result(batch, adv, parts, batch.weighted_sum())


@register("reinforce_pp")
def reinforce_pp(
    batch: RewardBatch,
    *,
    baseline: Literal["none", "group"] = "none",
    batch_norm: BatchNorm = "sequence",
    eps: float = 1e-8,
) -> AdvantageResult:
    """REINFORCE++ with global (batch) advantage normalization; ``baseline="group"`` for -baseline."""
    counts = token_counts_for(batch, batch_norm, "reinforce_pp")
    adv, parts = reinforce_pp_advantage(
        batch.rewards, batch.weights, batch.group_index, batch.num_groups, baseline, eps, counts
    )
    return _result(batch, adv, parts, batch.weighted_sum())


@register("directional")
def directional(
    batch: RewardBatch,
    *,
    direction: list[float] | None = None,
    angle: float | None = None,
    scale: Scale = "group",
    eps: float = 1e-4,
) -> AdvantageResult:
    """DPA: score ``v . r`` for a unit preference vector ``v``, then GRPO-normalize it.

    Give ``direction`` (K numbers, normalized here) or, for K = 2, ``angle`` in degrees
    (``v = (cos a, sin a)``). The batch's weights are not used: the direction replaces them.
    """
    v = _direction(batch, direction, angle)
    adv, parts = grpo_advantage(batch.rewards, v, batch.group_index, batch.num_groups, scale, eps)
    scores = torch.nan_to_num(batch.rewards, nan=0.0) @ v
    return AdvantageResult(
        advantages=adv,
        per_component=parts,
        metrics=score_metrics(batch, scores),
        extras={"scores": scores, "best_in_group": best_in_group(scores, batch.group_index, batch.num_groups)},
    )


def _direction(batch: RewardBatch, direction: list[float] | None, angle: float | None) -> Tensor:
    if (direction is None) == (angle is None):
        raise ValueError("directional: give exactly one of direction=[K numbers] or angle=degrees (K = 2)")
    if angle is not None:
        if batch.num_rewards != 2:
            raise ValueError(f"directional: angle needs K = 2 rewards, this batch has {list(batch.names)}")
        rad = torch.deg2rad(torch.tensor(float(angle), dtype=batch.rewards.dtype))
        return torch.stack([torch.cos(rad), torch.sin(rad)]).to(batch.rewards.device)
    v = torch.as_tensor(direction, dtype=batch.rewards.dtype, device=batch.rewards.device)
    if v.shape != (batch.num_rewards,):
        raise ValueError(
            f"directional: direction has {v.numel()} entries, expected K={batch.num_rewards} "
            f"(one per reward {list(batch.names)})"
        )
    return unit_direction(v)


def token_counts_for(batch: RewardBatch, batch_norm: str | None, estimator: str) -> Tensor | None:
    """Token counts for ``batch_norm="token"``; an error if the batch has no ``response_mask``."""
    if batch_norm != "token":
        return None
    if batch.response_mask is None:
        raise ValueError(f"{estimator}: batch_norm='token' needs RewardBatch.response_mask [N, L]")
    return batch.token_counts
