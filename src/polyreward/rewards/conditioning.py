"""Conditioning one reward on another (GDPO, arXiv 2601.05242)."""

from __future__ import annotations

import torch
from torch import Tensor


def condition_reward(reward: Tensor, gate: Tensor, threshold: float = 1.0) -> Tensor:
    """``reward * 1[gate >= threshold]``: pay an easy reward only when a harder one holds.

    GDPO reports that conditioning (e.g. length only for correct answers) sets priorities more
    reliably than lowering the easy reward's weight. A NaN gate does not hold; a NaN reward stays NaN.
    Shapes: ``reward[N]``, ``gate[N]`` -> ``[N]``.
    """
    holds = gate >= threshold  # NaN compares False
    return torch.where(holds | torch.isnan(reward), reward, torch.zeros_like(reward))
