"""HDPO conditional advantage: an efficiency reward compared only among qualifying samples.

Metis / "Act Wisely" (arXiv 2604.08545): accuracy and tool efficiency are two channels that are
never added before normalization. The efficiency channel is normalized only among the correct
rollouts of a prompt, so a fast wrong answer can never look good.
"""

from __future__ import annotations

import torch
from torch import Tensor

from polyreward.advantages.group import grpo_advantage, score_metrics
from polyreward.advantages.registry import AdvantageResult, register
from polyreward.batch import RewardBatch
from polyreward.groups import group_mean_std


def conditional_advantage(
    conditional: Tensor, qualify: Tensor, group_index: Tensor, num_groups: int, eps: float = 1e-6, min_qualify: int = 2
) -> Tensor:
    """The conditional channel ``A_c[N]`` of HDPO.

    ``A_c[i] = (r_i - mean_Q r) / (std_Q r + eps)`` where ``Q`` = the qualifying samples of i's group
    (``qualify[N]`` bool), if i qualifies and ``|Q| >= min_qualify``; otherwise 0. Unbiased std.
    Follows the newer HDPO code (``|Q| = 1`` gives 0), not the older HAPO one (which gives ``r_i``).
    """
    if min_qualify < 2:
        raise ValueError(f"hdpo: min_qualify must be >= 2 (a std needs two samples), got {min_qualify}")
    qualified = torch.where(qualify & ~torch.isnan(conditional), conditional, torch.full_like(conditional, float("nan")))
    mean, std, count = group_mean_std(qualified, group_index, num_groups)
    adv = (qualified - mean[group_index]) / (std[group_index] + eps)
    keep = ~torch.isnan(qualified) & (count[group_index] >= min_qualify)
    return torch.where(keep, adv, torch.zeros_like(adv))


@register("hdpo")
def hdpo(
    batch: RewardBatch,
    *,
    conditional: str | None = None,
    gate: str | None = None,
    gate_threshold: float = 1.0,
    conditional_weight: float = 0.15,
    min_qualify: int = 2,
    eps: float = 1e-6,
) -> AdvantageResult:
    """HDPO: GRPO on the primary rewards, plus a conditional channel for one reward.

    - ``conditional``: the reward compared only among qualifying samples (default: the last reward).
    - primary channel: GRPO on the weighted sum of all other rewards (e.g. ``0.9*answer + 0.1*format``).
    - qualifying: ``conditional > 0`` (the paper's tool reward is 0 for wrong answers), or, with
      ``gate``, ``batch[gate] >= gate_threshold``.
    - ``conditional_weight``: the channel's loss weight (paper: 0.15, ablated 0.10-0.20). The
      conditional reward's own entry in ``batch.weights`` only rescales it, which the normalization
      cancels; this parameter is the one that sets its influence.

    ``channels`` holds both; ``advantages = primary + conditional_weight * conditional`` is the
    combined view. A trainer should apply one clipped surrogate per channel, the conditional one
    aggregated only over samples with a nonzero conditional advantage.
    """
    if batch.num_rewards < 2:
        raise ValueError(f"hdpo: needs a primary and a conditional reward, this batch has only {list(batch.names)}")
    name = conditional if conditional is not None else batch.names[-1]
    column = batch.index(name)
    primary_names = [n for n in batch.names if n != name]
    primary = batch.select(*primary_names)
    a_primary, primary_parts = grpo_advantage(
        primary.rewards, primary.weights, batch.group_index, batch.num_groups, "group", eps
    )
    reward = batch.rewards[:, column]
    qualify = reward > 0 if gate is None else batch[gate] >= gate_threshold
    a_cond = conditional_advantage(reward, qualify, batch.group_index, batch.num_groups, eps, min_qualify)
    parts = torch.zeros_like(batch.rewards)
    parts[:, [batch.index(n) for n in primary_names]] = primary_parts
    parts[:, column] = conditional_weight * a_cond
    metrics = score_metrics(primary, primary.weighted_sum())
    metrics["qualifying_fraction"] = float(qualify.float().mean())
    metrics["conditional_nonzero_fraction"] = float((a_cond != 0).float().mean())
    return AdvantageResult(
        advantages=a_primary + conditional_weight * a_cond,
        per_component=parts,
        channels={"primary": a_primary, "conditional": a_cond},
        channel_weights={"primary": 1.0, "conditional": conditional_weight},
        metrics=metrics,
    )
