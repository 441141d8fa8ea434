"""HBPO advantage: inter-group GRPO plus an intra-subgroup budget term (arXiv 2507.15844)."""

from __future__ import annotations

import torch
from torch import Tensor

from polyreward.advantages.group import score_metrics
from polyreward.advantages.registry import AdvantageResult, register
from polyreward.batch import RewardBatch
from polyreward.groups import dense_index, group_mean_std, group_normalize
from polyreward.rewards.budget import budget_ceiling


def hbpo_advantage(
    scores: Tensor,
    budgets: Tensor,
    group_index: Tensor,
    num_groups: int,
    max_length: int = 4096,
    beta: float = 4.0,
    eps: float = 1e-6,
) -> tuple[Tensor, Tensor, Tensor]:
    """Hierarchical budget advantage ``A = A_inter + A_intra``.

    - ``A_inter = (R - mean_q R) / (std_q R + eps)`` over all rollouts of the query (GRPO);
    - ``A_intra = mean_{subgroup(q, b)} R - f2(b)``: one value per (query, budget) subgroup, <= 0
      when rewards come from :func:`hbpo_reward`, measuring how far the subgroup is from the best
      reward its budget allows.

    Implements the paper's formula; the released code adds ``A_intra`` twice (a bug).
    A NaN score (no reward applies) is left out of every mean and gets advantage 0.
    Args: ``scores[N]`` rewards, ``budgets[N]`` tokens, ``group_index[N]``.
    Returns ``(advantages[N], inter[N], intra[N])``.
    """
    inter = group_normalize(scores, group_index, num_groups, eps)
    _, budget_index = torch.unique(budgets, return_inverse=True)
    num_subgroups, subgroup = dense_index(group_index * (int(budget_index.max()) + 1) + budget_index)
    sub_mean, _, _ = group_mean_std(scores, subgroup, num_subgroups)
    intra = sub_mean[subgroup] - budget_ceiling(budgets, max_length, beta)
    intra = torch.where(torch.isnan(scores), torch.zeros_like(intra), intra)
    return inter + intra, inter, intra


@register("hbpo")
def hbpo(batch: RewardBatch, *, max_length: int = 4096, beta: float = 4.0, eps: float = 1e-6) -> AdvantageResult:
    """HBPO on the weighted sum of rewards (normally the single ``hbpo_reward`` component).

    Needs ``batch.budgets``. ``max_length`` and ``beta`` must match the reward's.
    """
    if batch.budgets is None:
        raise ValueError("hbpo: needs RewardBatch.budgets (the token budget of each sample)")
    scores = batch.weighted_sum()
    adv, inter, intra = hbpo_advantage(scores, batch.budgets, batch.group_index, batch.num_groups, max_length, beta, eps)
    return AdvantageResult(advantages=adv, metrics=score_metrics(batch, scores), extras={"inter": inter, "intra": intra})
