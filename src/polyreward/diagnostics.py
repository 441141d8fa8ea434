"""Diagnostics of a reward batch and an estimator: what each reward contributes, and what gets lost.

``diagnose(batch, "gdpo")`` returns per-reward statistics, each reward's share of the advantage
signal, the reward correlation matrix and the collapse count GDPO describes (distinct reward
vectors vs distinct advantage values per group). ``.table()`` prints them; ``.as_dict()`` gives
flat metric names (``diag/<reward>/...``) for loggers.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from polyreward.advantages.registry import AdvantageResult, compute
from polyreward.batch import RewardBatch
from polyreward.groups import group_mean_std, group_sum


@dataclasses.dataclass(frozen=True)
class Diagnostics:
    """Per-reward tensors are ``[K]`` in the order of ``names``; ``correlation`` is ``[K, K]``."""

    estimator: str
    names: tuple[str, ...]
    num_samples: int
    num_groups: int
    reward_mean: Tensor
    reward_std: Tensor
    applicable: Tensor
    zero_variance_groups: Tensor
    advantage_share: Tensor | None
    correlation: Tensor
    distinct_reward_vectors: float | None
    distinct_advantages: float | None
    collapsed_groups: float | None
    batch_distinct_reward_vectors: int | None
    batch_distinct_advantages: int | None
    estimator_metrics: dict[str, float]

    def as_dict(self) -> dict[str, float]:
        """Flat metrics: ``diag/<reward>/mean``, ``diag/<reward>/adv_share``, ``diag/collapsed_groups`` ..."""
        out: dict[str, float] = {}
        per_reward = {
            "mean": self.reward_mean,
            "std": self.reward_std,
            "applicable": self.applicable,
            "zero_var_groups": self.zero_variance_groups,
            "adv_share": self.advantage_share,
        }
        for key, values in per_reward.items():
            if values is not None:
                out.update({f"diag/{name}/{key}": float(v) for name, v in zip(self.names, values, strict=True)})
        for key in (
            "distinct_reward_vectors",
            "distinct_advantages",
            "collapsed_groups",
            "batch_distinct_reward_vectors",
            "batch_distinct_advantages",
        ):
            if getattr(self, key) is not None:
                out[f"diag/{key}"] = float(getattr(self, key))
        out.update({f"diag/{self.estimator}/{k}": v for k, v in self.estimator_metrics.items()})
        return out

    def table(self) -> str:
        """A plain-text report: one row per reward, then collapse counts and the correlation matrix."""
        width = max(8, *(len(n) for n in self.names))
        head = f"{'reward':<{width}}  {'mean':>8}  {'std':>8}  {'applies':>7}  {'zero-var groups':>15}  {'adv share':>9}"
        lines = [
            f"estimator {self.estimator}: N={self.num_samples} samples, {self.num_groups} groups, "
            f"K={len(self.names)} rewards",
            head,
            "-" * len(head),
        ]
        for k, name in enumerate(self.names):
            share = "n/a" if self.advantage_share is None else f"{float(self.advantage_share[k]):.3f}"
            lines.append(
                f"{name:<{width}}  {_num(self.reward_mean[k])}  {_num(self.reward_std[k])}  "
                f"{float(self.applicable[k]):>7.2f}  {float(self.zero_variance_groups[k]):>15.2f}  {share:>9}"
            )
        if self.distinct_reward_vectors is not None:
            lines += [
                "",
                f"per group: {self.distinct_reward_vectors:.2f} distinct reward vectors -> "
                f"{self.distinct_advantages:.2f} distinct advantages on average; "
                f"{self.collapsed_groups:.0%} of groups lose distinctions",
                f"whole batch: {self.batch_distinct_reward_vectors} distinct reward vectors -> "
                f"{self.batch_distinct_advantages} distinct advantage values",
            ]
        if len(self.names) > 1:
            lines += ["", "reward correlation:", " " * width + "".join(f"  {n[:8]:>8}" for n in self.names)]
            for k, name in enumerate(self.names):
                lines.append(f"{name:<{width}}" + "".join(f"  {_num(c)}" for c in self.correlation[k]))
        if self.estimator_metrics:
            lines += ["", "estimator: " + ", ".join(f"{k}={v:.3g}" for k, v in self.estimator_metrics.items())]
        return "\n".join(lines)


def _num(value: Tensor) -> str:
    v = float(value)
    return f"{'nan':>8}" if v != v else f"{v:>8.3f}"


def diagnose(
    batch: RewardBatch, estimator: str | AdvantageResult = "grpo", *, decimals: int = 3, **params: object
) -> Diagnostics:
    """Diagnostics of ``batch`` under ``estimator`` (a registered name, computed with ``params``, or a
    result you already have). Advantages are compared after rounding to ``decimals`` places (the ``eps`` in
    std + eps moves values in the 4th decimal, so 3 places by default)."""
    if isinstance(estimator, AdvantageResult):
        name, result = "given", estimator
    else:
        name, result = estimator, compute(estimator, batch, **params)
    rewards, index, groups = batch.rewards, batch.group_index, batch.num_groups
    valid = ~torch.isnan(rewards)
    _, std, count = group_mean_std(rewards, index, groups)
    compared = count > 1
    zero_var = torch.where(compared, (std == 0).to(rewards.dtype), torch.zeros_like(std)).sum(0)
    collapse = _collapse(batch, result.advantages, decimals) if result.level == "sample" else (None,) * 5
    return Diagnostics(
        estimator=name,
        names=batch.names,
        num_samples=batch.num_samples,
        num_groups=groups,
        reward_mean=torch.nanmean(rewards, 0),
        reward_std=_nanstd(rewards),
        applicable=valid.to(rewards.dtype).mean(0),
        zero_variance_groups=zero_var / compared.sum(0).clamp_min(1),
        advantage_share=advantage_share(result, batch.num_rewards),
        correlation=reward_correlation(rewards),
        distinct_reward_vectors=collapse[0],
        distinct_advantages=collapse[1],
        collapsed_groups=collapse[2],
        batch_distinct_reward_vectors=collapse[3],
        batch_distinct_advantages=collapse[4],
        estimator_metrics=dict(result.metrics),
    )


def _nanstd(x: Tensor) -> Tensor:
    """Unbiased std of each column of ``x[N, K]`` over its non-NaN entries."""
    _, std, _ = group_mean_std(x, torch.zeros(len(x), dtype=torch.long, device=x.device), 1)
    return std[0]


def advantage_share(result: AdvantageResult, num_rewards: int) -> Tensor | None:
    """``[K]`` share of total ``|advantage|`` mass carried by each reward's additive part."""
    if result.per_component is None:
        return torch.ones(1) if num_rewards == 1 else None
    mass = result.per_component.abs().reshape(-1, num_rewards).sum(0)
    total = mass.sum()
    return mass / total if total > 0 else torch.zeros_like(mass)


def reward_correlation(rewards: Tensor) -> Tensor:
    """Pearson correlation ``[K, K]`` of reward columns, each pair over rows where both apply.

    NaN where a pair has fewer than two common rows or a column is constant on them.
    """
    valid = (~torch.isnan(rewards)).to(rewards.dtype)
    x = torch.nan_to_num(rewards, nan=0.0) * valid
    n = valid.T @ valid  # [a, b] rows where both apply
    sum_a = x.T @ valid  # [a, b] sum of column a over those rows
    sum_sq_a = (x * x).T @ valid
    cross = x.T @ x
    mean_a, mean_b = sum_a / n, sum_a.T / n
    cov = cross / n - mean_a * mean_b
    var_a = sum_sq_a / n - mean_a**2
    var_b = var_a.T
    corr = cov / (var_a.clamp_min(0) * var_b.clamp_min(0)).sqrt()
    degenerate = (n < 2) | (var_a <= 1e-12) | (var_b <= 1e-12)
    return torch.where(degenerate, torch.full_like(corr, float("nan")), corr.clamp(-1, 1))


def _collapse(batch: RewardBatch, advantages: Tensor, decimals: int) -> tuple[float, float, float, int, int]:
    """Distinct reward vectors and distinct advantage values, per group and over the whole batch."""
    index, groups = batch.group_index, batch.num_groups
    # NaN != NaN, so give "not applicable" a finite code before comparing rows.
    codes = torch.nan_to_num(batch.rewards, nan=float(torch.finfo(batch.rewards.dtype).max))
    rounded = torch.round(advantages * 10**decimals)
    vectors_per_group = _distinct_rows_per_group(codes, index, groups)
    values_per_group = _distinct_rows_per_group(rounded[:, None], index, groups)
    return (
        float(vectors_per_group.float().mean()),
        float(values_per_group.float().mean()),
        float((values_per_group < vectors_per_group).float().mean()),
        int(torch.unique(codes, dim=0).shape[0]),
        int(torch.unique(rounded).numel()),
    )


def _distinct_rows_per_group(rows: Tensor, group_index: Tensor, num_groups: int) -> Tensor:
    """Number of distinct rows of ``rows[N, D]`` within each group -> ``[num_groups]``."""
    keyed = torch.cat([group_index[:, None].to(rows.dtype), rows], dim=1)
    unique = torch.unique(keyed, dim=0)
    ones = torch.ones(len(unique), dtype=torch.long, device=rows.device)
    return group_sum(ones, unique[:, 0].long(), num_groups)
