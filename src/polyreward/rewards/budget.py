"""HBPO's budget-aware length reward (Hierarchical Budget Policy Optimization, arXiv 2507.15844)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def budget_ceiling(budgets: Tensor, max_length: int = 4096, beta: float = 4.0) -> Tensor:
    """``f2(b) = beta * cos(pi * b / (2 * L_max))``: the reward of a correct answer within budget ``b``.

    Shapes: ``budgets[N]`` (tokens) -> ``[N]``.
    """
    return beta * torch.cos(math.pi * budgets / (2 * max_length))


def hbpo_reward(
    n_tokens: Tensor | Sequence[int],
    budgets: Tensor | Sequence[float],
    correct: Tensor | Sequence[bool],
    max_length: int = 4096,
    beta: float = 4.0,
    alpha: float = 1 / 4096,
) -> Tensor:
    """HBPO reward ``R(n | b)`` for responses of ``n_tokens[N]`` under ``budgets[N]``.

    - correct and ``n <= b``: ``f2(b)`` (flat: no push to shrink inside the budget);
    - correct and ``b < n <= L_max``: ``f1(n, b) = beta * cos(pi n / (2 L_max)) - alpha * |n - b|``;
    - wrong, or longer than ``L_max``: 0.

    This is the paper's piecewise form; the released code's ``min(f1, f2)`` differs only when
    ``n <= b`` and the deviation term makes ``f1`` smaller. ``beta = 4``, ``alpha = 1/4096`` and
    ``L_max = 4096`` are the code's constants (the paper leaves them symbolic).
    """
    budgets = torch.as_tensor(budgets)
    budgets = budgets if budgets.is_floating_point() else budgets.to(torch.get_default_dtype())
    n = torch.as_tensor(n_tokens).to(budgets.dtype)
    correct = torch.as_tensor(correct)
    over = beta * torch.cos(math.pi * n / (2 * max_length)) - alpha * (n - budgets).abs()
    reward = torch.where(n <= budgets, budget_ceiling(budgets, max_length, beta), over)
    return torch.where(correct.bool() & (n <= max_length), reward, torch.zeros_like(reward))
