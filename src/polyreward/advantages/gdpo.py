"""GDPO: normalize each reward within its group, then sum (Liu et al., NVIDIA, arXiv 2601.05242)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from polyreward.advantages.group import BatchNorm, score_metrics, token_counts_for
from polyreward.advantages.registry import AdvantageResult, register
from polyreward.batch import RewardBatch
from polyreward.groups import batch_normalize_parts, group_normalize


def gdpo_advantage(
    rewards: Tensor,
    weights: Tensor,
    group_index: Tensor,
    num_groups: int,
    eps: float = 1e-4,
    batch_norm: BatchNorm | None = "sequence",
    token_counts: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Group reward-decoupled normalization.

    1. ``A_k = (r_k - mean_g r_k) / (std_g r_k + eps)`` for each reward (unbiased std; NaN entries
       are left out of the statistics and get ``A_k = 0``; a reward constant in a group gives 0);
    2. ``pre = sum_k w_k A_k``;
    3. ``batch_norm="sequence"``: ``(pre - mean(pre)) / (std(pre) + eps)`` over all samples with at
       least one applicable reward (the others get 0, as TRL 1.16 does for unscorable rows);
       ``"token"``: the same statistics weighted by ``token_counts[N]`` (verl's token whitening);
       ``None``: ``pre`` as it is.

    Args: ``rewards[N, K]``, ``weights[K]``, ``group_index[N]``.
    Returns ``(advantages[N], per_component[N, K], normalized[N, K])`` where ``normalized`` is
    step 1's ``A_k`` and ``per_component.sum(-1) == advantages``.
    """
    normalized = group_normalize(rewards, group_index, num_groups, eps)
    parts = normalized * weights
    if batch_norm is not None:
        scorable = ~torch.isnan(rewards).all(-1)
        parts = batch_normalize_parts(parts, eps, token_counts if batch_norm == "token" else None, scorable)
    return parts.sum(-1), parts, normalized


@register("gdpo")
def gdpo(
    batch: RewardBatch,
    *,
    batch_norm: Literal["sequence", "token"] | None = "sequence",
    eps: float = 1e-4,
) -> AdvantageResult:
    """GDPO (TRL's ``normalize_then_sum``); ``extras["normalized"]`` holds each reward's group advantage."""
    counts = token_counts_for(batch, batch_norm, "gdpo")
    adv, parts, normalized = gdpo_advantage(
        batch.rewards, batch.weights, batch.group_index, batch.num_groups, eps, batch_norm, counts
    )
    return AdvantageResult(
        advantages=adv,
        per_component=parts,
        metrics=score_metrics(batch, batch.rewards),  # no signal only where every reward is flat
        extras={"normalized": normalized},
    )
