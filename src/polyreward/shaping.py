"""Reward shaping and exploration-bonus combination, as pure tensor functions."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor


def potential_shaping(
    rewards: Tensor,
    potentials: Tensor,
    terminated: Tensor,
    gamma: float,
    terminal_potential: Literal["zero", "keep"] = "zero",
) -> Tensor:
    """Potential-based shaping ``r'_t = r_t + gamma * Phi(s_{t+1}) - Phi(s_t)`` (Ng et al. 1999).

    Shapes: ``rewards[T, ...]``, ``potentials[T+1, ...]`` (``Phi`` of every visited state, the last
    one being the state after step T-1), ``terminated[T, ...]`` bool.
    ``terminal_potential="zero"`` sets ``Phi = 0`` after a terminal step, which keeps the optimal
    policy unchanged in episodic tasks; ``"keep"`` uses the given potential (the shaping then sums to
    ``gamma^T Phi(s_T) - Phi(s_0)``). Robo-Dopamine (arXiv 2512.23703) uses this form to avoid the
    "semantic trap" of paying the progress estimate itself as reward.
    """
    if terminal_potential not in ("zero", "keep"):
        raise ValueError(f"potential_shaping: terminal_potential={terminal_potential!r} is not one of ['zero', 'keep']")
    following = potentials[1:]
    if terminal_potential == "zero":
        following = torch.where(terminated, torch.zeros_like(following), following)
    return rewards + gamma * following - potentials[:-1]


def combine_bonuses(
    global_bonus: Tensor,
    episodic_bonus: Tensor,
    mode: Literal["product", "sum"] = "product",
    global_coef: float = 1.0,
) -> Tensor:
    """Global x episodic exploration bonus (Henaff et al. 2023, arXiv 2306.03236).

    ``"product"`` (the E3B code's default ``mult``): ``b_epi * b_glob``; ``"sum"``:
    ``b_epi + global_coef * b_glob``. Shapes: two ``[N]`` tensors -> ``[N]``.
    """
    if mode == "product":
        return episodic_bonus * global_bonus
    if mode == "sum":
        return episodic_bonus + global_coef * global_bonus
    raise ValueError(f"combine_bonuses: mode={mode!r} is not one of ['product', 'sum']")
