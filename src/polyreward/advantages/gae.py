"""GAE with a trailing reward axis, and multi-critic advantages (SLIM / MOPPO).

Step tensors are time-major: ``[T, E, ...]`` for ``T`` steps of ``E`` environments. ``terminated``
stops bootstrapping; ``terminated | truncated`` stops the recursion (an episode boundary).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from polyreward.advantages.registry import AdvantageResult, register
from polyreward.batch import RewardBatch
from polyreward.groups import batch_normalize_parts

CriticNorm = Literal["per_critic", "scalarized", "none"]


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float = 0.99,
    lam: float = 0.95,
) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016), for any trailing shape.

    ``delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)``;
    ``A_t = delta_t + gamma * lam * (1 - done_t) * A_{t+1}`` with ``done = terminated | truncated``.
    Args: ``rewards``, ``values`` (``V(s_t)``) and ``next_values`` (``V(s_{t+1})``; at a truncation it
    must be the value of the true final observation) are ``[T, E, ...]``; ``terminated``,
    ``truncated`` are ``[T, E]`` bool. Returns ``(advantages, returns = advantages + values)``.
    """
    extra = (1,) * (rewards.dim() - terminated.dim())
    bootstrap = (~terminated).to(rewards.dtype).reshape(*terminated.shape, *extra)
    carry = (~(terminated | truncated)).to(rewards.dtype).reshape(*terminated.shape, *extra)
    deltas = rewards + gamma * bootstrap * next_values - values
    advantages = torch.zeros_like(deltas)
    running = torch.zeros_like(deltas[0])
    for t in range(deltas.shape[0] - 1, -1, -1):  # a loop over time, inherent to the recursion
        running = deltas[t] + gamma * lam * carry[t] * running
        advantages[t] = running
    return advantages, advantages + values


def multi_critic_advantage(
    per_critic: Tensor, weights: Tensor, norm: CriticNorm = "per_critic", eps: float = 1e-8
) -> Tensor:
    """Combine per-critic advantages ``[T, E, K]`` into additive parts ``[T, E, K]`` (sum = advantage).

    - ``"per_critic"`` (SLIM, arXiv 2402.00823): ``w_k * (A_k - mean A_k) / (std A_k + eps)``, population
      std over all T*E steps, no renormalization after weighting;
    - ``"scalarized"`` (MORL-Baselines MOPPO): ``A @ w`` normalized with its unbiased std;
    - ``"none"``: ``w_k * A_k``.
    """
    if norm == "per_critic":
        flat = per_critic.reshape(-1, per_critic.shape[-1])
        return weights * (per_critic - flat.mean(0)) / (flat.std(0, correction=0) + eps)
    if norm == "scalarized":
        flat = (per_critic * weights).reshape(-1, per_critic.shape[-1])
        return batch_normalize_parts(flat, eps).reshape(per_critic.shape)
    return per_critic * weights


def _step_values(batch: RewardBatch, values: Tensor | None, next_values: Tensor | None, name: str) -> tuple[Tensor, Tensor]:
    """``(values, next_values)`` as ``[T, E, ...]`` from ``values[T+1, E, ...]`` or two ``[T, E, ...]``."""
    if batch.step_shape is None:
        raise ValueError(f"{name}: needs a step batch (RewardBatch.from_steps with terminated/truncated)")
    if values is None:
        raise ValueError(f"{name}: needs values=V(s_t) as [T+1, E, K] (or [T, E, K] with next_values)")
    t, e = batch.step_shape
    values = torch.as_tensor(values, dtype=batch.rewards.dtype, device=batch.rewards.device)
    if next_values is None:
        if values.shape[:2] != (t + 1, e):
            raise ValueError(
                f"{name}: values has shape {tuple(values.shape)}, expected [T+1={t + 1}, E={e}, ...] "
                "when next_values is not given"
            )
        return values[:-1], values[1:]
    next_values = torch.as_tensor(next_values, dtype=batch.rewards.dtype, device=batch.rewards.device)
    if values.shape[:2] != (t, e) or next_values.shape != values.shape:
        raise ValueError(
            f"{name}: values {tuple(values.shape)} and next_values {tuple(next_values.shape)} "
            f"must both be [T={t}, E={e}, ...]"
        )
    return values, next_values


def _per_critic_gae(batch: RewardBatch, values: Tensor, next_values: Tensor, gamma: float, lam: float, name: str):
    t, e = batch.step_shape
    if values.shape[2:] != (batch.num_rewards,):
        raise ValueError(
            f"{name}: values need one critic per reward, shape [.., {batch.num_rewards}] for "
            f"{list(batch.names)}, got {tuple(values.shape)}"
        )
    rewards = torch.nan_to_num(batch.rewards, nan=0.0).reshape(t, e, -1)
    return gae(rewards, values, next_values, batch.terminated, batch.truncated, gamma, lam)


@register("multi_critic")
def multi_critic(
    batch: RewardBatch,
    *,
    values: Tensor | None = None,
    next_values: Tensor | None = None,
    gamma: float = 0.99,
    lam: float = 0.95,
    norm: CriticNorm = "per_critic",
    eps: float = 1e-8,
) -> AdvantageResult:
    """One critic per reward: GAE per reward, then combined with ``batch.weights`` (SLIM / MOPPO).

    ``values``: ``[T+1, E, K]`` critic outputs. ``advantages[T, E]``, ``per_component[T, E, K]``,
    ``extras["returns"][T, E, K]`` (each critic's target) and ``extras["per_critic"]`` (raw GAE).
    """
    v, nv = _step_values(batch, values, next_values, "multi_critic")
    per_critic, returns = _per_critic_gae(batch, v, nv, gamma, lam, "multi_critic")
    parts = multi_critic_advantage(per_critic, batch.weights, norm, eps)
    return AdvantageResult(
        advantages=parts.sum(-1), per_component=parts, level="step", extras={"returns": returns, "per_critic": per_critic}
    )


@register("gae")
def gae_estimator(
    batch: RewardBatch,
    *,
    values: Tensor | None = None,
    next_values: Tensor | None = None,
    gamma: float = 0.99,
    lam: float = 0.95,
) -> AdvantageResult:
    """Plain GAE. ``values[T+1, E]``: one critic on the weighted sum of rewards (scalarized PPO);
    ``values[T+1, E, K]``: one GAE per reward, summed with the weights (no normalization)."""
    v, nv = _step_values(batch, values, next_values, "gae")
    if v.dim() == 3:
        per_critic, returns = _per_critic_gae(batch, v, nv, gamma, lam, "gae")
        parts = per_critic * batch.weights
        return AdvantageResult(advantages=parts.sum(-1), per_component=parts, level="step", extras={"returns": returns})
    t, e = batch.step_shape
    scores = (torch.nan_to_num(batch.rewards, nan=0.0) @ batch.weights).reshape(t, e)
    adv, returns = gae(scores, v, nv, batch.terminated, batch.truncated, gamma, lam)
    return AdvantageResult(advantages=adv, level="step", extras={"returns": returns})
