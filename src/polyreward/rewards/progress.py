"""Progress rewards for multi-step tasks: SPA-RL step rewards and Robo-Dopamine hop labels.

- SPA-RL (Stepwise Progress Attribution, arXiv 2505.20732): a progress estimator gives each step a
  contribution ``c_t`` trained so that ``Σ_t c_t`` matches the final reward; the step reward adds a
  grounding bonus for executable actions.
- Robo-Dopamine (arXiv 2512.23703, ``FlagOpen/Robo-Dopamine``): a generative reward model predicts
  the relative progress "hop" between two frames; hops are accumulated into a progress curve,
  which can be fused across anchors (incremental / forward / backward) or views.

Shapes: ``[..., T]`` with steps on the last axis; leading axes are batch axes.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

import torch
from torch import Tensor

ProgressMode = Literal["incremental", "forward", "backward"]


def _floats(x: Any) -> Tensor:
    t = torch.as_tensor(x)
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def _step_mask(mask: Any, shape: torch.Size) -> Tensor:
    m = torch.ones(shape, dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool()
    if m.shape != shape:
        raise ValueError(f"mask must have the shape of the steps {tuple(shape)}, got {tuple(m.shape)}")
    return m


# ---------------------------------------------------------------------------------------------- SPA-RL
def spa_step_rewards(
    contributions: Any, executable: Any, mask: Any = None, grounding: float = 0.5, final_grounding: float = 0.5
) -> Tensor:
    """SPA-RL step rewards ``r_t = c_t + g_t`` for ``contributions[..., T]``, ``executable[..., T]`` (bool).

    ``g_t = grounding`` if step t's action executed (the environment did not answer "Nothing
    happens") else 0; the last step of each trajectory gets ``final_grounding`` instead. ``mask``
    ``[..., T]`` marks real steps (a prefix of each row); padding gets NaN ("no such step"), so the
    result feeds ``RewardBatch(turn_rewards=...)`` directly. Follows the paper; the released
    ``rl_data_org.py`` instead writes a leave-one-out-centred final reward into every step.
    """
    c = _floats(contributions)
    m = _step_mask(mask, c.shape)
    ran = torch.as_tensor(executable).bool()
    if ran.shape != c.shape:
        raise ValueError(f"executable must have the shape of contributions {tuple(c.shape)}, got {tuple(ran.shape)}")
    g = torch.where(ran, grounding, 0.0).to(c.dtype)
    steps = torch.arange(c.shape[-1])
    last = torch.where(m, steps, -1).max(dim=-1, keepdim=True).values
    g = torch.where(steps == last, torch.as_tensor(final_grounding, dtype=c.dtype), g)
    return torch.where(m, c + g, torch.full_like(c, math.nan))


def progress_estimator_loss(
    contributions: Tensor, final_reward: Tensor, mask: Any = None, reduction: Literal["mean", "sum", "none"] = "mean"
) -> Tensor:
    """SPA-RL estimator loss ``(Σ_t c_t − R)²`` for ``contributions[N, T]`` and ``final_reward[N]``.

    Masked steps (``mask[N, T]`` False) do not count. ``reduction`` over N: ``"mean"`` (default),
    ``"sum"`` or ``"none"`` (``[N]``). Differentiable in ``contributions``.
    """
    m = _step_mask(mask, contributions.shape)
    total = torch.where(m, contributions, torch.zeros_like(contributions)).sum(-1)
    loss = (total - final_reward.to(total.dtype)) ** 2
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction={reduction!r} is not one of ['mean', 'sum', 'none']")


# ---------------------------------------------------------------------------------------------- Robo-Dopamine
def hop_label(first: Any, before: Any, after: Any, last: Any) -> Any:
    """Relative progress "hop" from frame ``before`` to ``after`` of a demo spanning ``[first, last]``.

    ``(after − before) / (last − before)`` when moving forward (normalized by the distance left),
    ``(after − before) / (before − first)`` when moving back (normalized by the progress made), 0
    when equal; in ``[-1, 1]``. Frame indices stand in for true progress. Works elementwise on
    tensors (returns a tensor) or on numbers (returns a float). Raises if a frame lies outside
    ``[first, last]``.
    """
    scalar = all(isinstance(v, (int, float)) for v in (first, before, after, last))
    f, b, a, l_ = (_floats(v) for v in (first, before, after, last))
    f, b, a, l_ = torch.broadcast_tensors(f, b, a, l_)
    if ((b < f) | (b > l_) | (a < f) | (a > l_)).any():
        raise ValueError("hop_label: before and after must lie within [first, last]")
    ahead = a > b
    denom = torch.where(ahead, l_ - b, b - f)
    hop = torch.where(a == b, torch.zeros_like(a), (a - b) / torch.where(a == b, torch.ones_like(denom), denom))
    return float(hop) if scalar else hop


def hop_bucket(score: Any, bins: int = 25, low: float = -100.0, high: float = 100.0) -> Any:
    """Score bin of a hop in percent (clipped to ``[low, high]``; ``high`` falls in the last bin).

    The data generator balances training pairs over 25 bins on ``[-100, 100]``. Numbers in, int
    out; tensors in, long tensor out.
    """
    scalar = isinstance(score, (int, float))
    s = _floats(score).clamp(low, high)
    index = torch.floor((s - low) / ((high - low) / bins)).long().clamp(max=bins - 1)
    return int(index) if scalar else index


def format_hop(hop: float) -> str:
    """The GRM's label text for a hop in ``[-1, 1]``: ``<score>+37.5%</score>``."""
    return f"<score>{100.0 * hop:+.1f}%</score>"


def parse_hop(text: str) -> float | None:
    """The hop in ``[-1, 1]`` from a GRM output ``…<score>+NN%</score>``, clipped; None if unreadable."""
    match = re.search(r"<score>\s*([-+]?\d+(?:\.\d+)?)\s*%?\s*</score>", text)
    if not match:
        return None
    return max(-1.0, min(1.0, float(match.group(1)) / 100.0))


def progress_from_hops(hops: Any, mode: ProgressMode = "incremental") -> Tensor:
    """Progress curve ``p[..., T]`` from GRM scores ``hops[..., T]`` (fractions, clipped to ``[-1, 1]``).

    - ``"incremental"`` (each score compares consecutive frames): ``p_0 = h_0``,
      ``p_t = p_{t-1} + (1 − p_{t-1})·h_t`` if ``h_t ≥ 0`` else ``p_{t-1} + p_{t-1}·h_t``;
    - ``"forward"`` (each score compares the start with frame t): ``p_t = h_t``;
    - ``"backward"`` (each score compares the goal with frame t): ``p_t = 1 + h_t``.

    As in the released ``examples/inference.py`` (no clamping of p beyond the score clip).
    """
    h = _floats(hops).clamp(-1.0, 1.0)
    if mode == "forward":
        return h.clone()
    if mode == "backward":
        return 1.0 + h
    if mode != "incremental":
        raise ValueError(f"mode={mode!r} is not one of ['incremental', 'forward', 'backward']")
    out = torch.empty_like(h)
    prev = torch.zeros_like(h[..., 0])
    for t in range(h.shape[-1]):
        step = h[..., t]
        prev = step if t == 0 else torch.where(step >= 0, prev + (1 - prev) * step, prev + prev * step)
        out[..., t] = prev
    return out


def fuse_progress(*estimates: Any, op: Literal["mean", "median"] = "mean") -> Tensor:
    """Fuse progress estimates of the same frames (anchors or views), each ``[..., T]``, into one ``[..., T]``.

    ``"mean"`` or ``"median"`` (the middle value; the mean of the two middle values for an even
    count). Robo-Dopamine fuses incremental, forward and backward estimates; its exact operator
    is unverified, so the mean is our default.
    """
    if not estimates:
        raise ValueError("fuse_progress needs at least one estimate")
    stacked = torch.stack(torch.broadcast_tensors(*(_floats(e) for e in estimates)), dim=0)
    if op == "mean":
        return stacked.mean(0)
    if op == "median":
        return stacked.quantile(0.5, dim=0) if stacked.shape[0] > 1 else stacked[0]
    raise ValueError(f"op={op!r} is not one of ['mean', 'median']")
