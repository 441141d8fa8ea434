"""Vectorized per-group statistics (segment reductions) shared by every group estimator.

All statistics take a dense group index (``0 .. num_groups-1``, as :func:`dense_index` and
``RewardBatch.group_index`` provide) and reduce over dim 0 with ``index_add_``: no Python loop over groups or samples.
Trailing dimensions are carried through, so ``x`` may be ``[N]``, ``[N, K]`` or ``[N, T]``.
NaN entries count as "not applicable": they are left out of every statistic.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Singleton = Literal["zero", "raw"]


def group_sum(x: Tensor, group_index: Tensor, num_groups: int) -> Tensor:
    """Sum of ``x[N, ...]`` per group -> ``[num_groups, ...]``."""
    out = torch.zeros((num_groups, *x.shape[1:]), dtype=x.dtype, device=x.device)
    return out.index_add_(0, group_index, x)


def group_mean(x: Tensor, group_index: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """NaN-aware mean and count of ``x[N, ...]`` per group, each ``[num_groups, ...]``.

    ``mean`` is NaN where a group has no applicable entry (``count == 0``).
    """
    valid = ~torch.isnan(x)
    count = group_sum(valid.to(x.dtype), group_index, num_groups)
    return group_sum(torch.nan_to_num(x, nan=0.0), group_index, num_groups) / count, count


def group_mean_std(x: Tensor, group_index: Tensor, num_groups: int, ddof: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """NaN-aware mean, std and count of ``x[N, ...]`` per group.

    Returns ``(mean, std, count)``, each ``[num_groups, ...]``. ``std`` uses ``ddof`` (1 = unbiased,
    the GRPO convention) and is NaN where ``count <= ddof``; ``mean`` is NaN where ``count == 0``.
    Two-pass (centre first, then square) for numerical stability.
    """
    mean, count = group_mean(x, group_index, num_groups)
    centred = torch.nan_to_num(x - mean[group_index], nan=0.0)
    var = group_sum(centred * centred, group_index, num_groups) / (count - ddof)
    std = torch.where(count > ddof, var.clamp_min(0).sqrt(), torch.full_like(var, float("nan")))
    return mean, std, count


def group_normalize(
    x: Tensor,
    group_index: Tensor,
    num_groups: int,
    eps: float,
    scale: bool = True,
    singleton: Singleton = "zero",
) -> Tensor:
    """GRPO group normalization ``(x - mean_g) / (std_g + eps)`` of ``x[N, ...]``.

    - NaN entries (not applicable) get 0 and are left out of their group's statistics.
    - A group (or group column) with one applicable entry has no comparison to make:
      ``singleton="zero"`` gives it 0 (polyreward's default: no signal without a baseline);
      ``singleton="raw"`` gives ``x / (1 + eps)``, verl's mean 0 / std 1 convention, which MatchTIR's
      turn-level advantage relies on.
    - A zero-variance group gives 0 (its numerator is 0; ``eps > 0`` keeps it finite).
    - ``scale=False`` only subtracts the mean (Dr.GRPO).
    """
    mean, std, count = group_mean_std(x, group_index, num_groups)
    centred = x - mean[group_index]
    out = centred / (std[group_index] + eps) if scale else centred
    n = count[group_index]
    if singleton == "raw":
        out = torch.where(n == 1, x / (1 + eps), out)
    keep = (n >= 1 if singleton == "raw" else n > 1) & ~torch.isnan(x)
    return torch.where(keep, out, torch.zeros((), dtype=x.dtype, device=x.device))


def batch_standardize(x: Tensor, eps: float, token_counts: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Mean and std of ``x[N, ...]`` over the whole batch (dim 0), for batch-wise normalization.

    With ``token_counts[N]`` every sample is weighted by its number of response tokens, which is what
    whitening the token-broadcast advantages (verl ``masked_whiten``) computes; the variance keeps
    verl's unbiased correction ``n / (n - 1)`` with ``n`` the total token count.
    Returns ``(mean, std + eps)`` shaped like ``x[0]`` so callers write ``(x - mean) / denom``.
    """
    if token_counts is None:
        return x.mean(0), x.std(0) + eps
    w = token_counts.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    total = w.sum()
    mean = (w * x).sum(0) / total
    var = (w * (x - mean) ** 2).sum(0) / total * (total / (total - 1))
    return mean, var.sqrt() + eps


def batch_normalize_parts(
    parts: Tensor, eps: float, token_counts: Tensor | None = None, include: Tensor | None = None
) -> Tensor:
    """Batch-normalize ``pre = parts.sum(-1)`` while keeping its additive split over K parts.

    ``parts[N, K]`` -> ``out[N, K]`` with ``out.sum(-1) == (pre - mean(pre)) / (std(pre) + eps)``:
    each part is centred by its own batch mean and divided by the common ``std(pre) + eps``.
    ``include[N]`` (bool) restricts the statistics to some rows; the other rows get 0. With fewer
    than two rows there is no spread to divide by: every row is its own mean and gets 0.
    """
    if include is None and len(parts) < 2:
        return torch.zeros_like(parts)
    if include is not None:
        out = torch.zeros_like(parts)
        out[include] = batch_normalize_parts(parts[include], eps, None if token_counts is None else token_counts[include])
        return out
    part_means, _ = batch_standardize(parts, eps, token_counts)
    _, denom = batch_standardize(parts.sum(-1), eps, token_counts)
    return (parts - part_means) / denom


def dense_index(ids: Tensor) -> tuple[int, Tensor]:
    """Map arbitrary ids ``[N]`` to ``0..G-1`` in order of first appearance; returns ``(G, index[N])``."""
    if ids.numel() == 0:
        return 0, ids
    uniques, inverse = torch.unique(ids, return_inverse=True)
    first = torch.full((uniques.numel(),), ids.numel(), dtype=torch.long, device=ids.device)
    first.scatter_reduce_(0, inverse, torch.arange(ids.numel(), device=ids.device), reduce="amin")
    rank = torch.empty_like(first)
    rank[torch.argsort(first)] = torch.arange(first.numel(), device=ids.device)
    return uniques.numel(), rank[inverse]
