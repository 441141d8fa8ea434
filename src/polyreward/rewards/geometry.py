"""Overlap rewards: box IoU for visual grounding, temporal IoU for video grounding (Temporal-R1).

Pure functions take tensors (or nested lists) and broadcast over leading dimensions. The batched
factories parse the prediction from the completion and compare it with a ground-truth column; a
prediction that cannot be parsed scores 0 (a legitimate low score), a malformed ground truth raises.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from polyreward.rewards._columns import RewardFn, bad_entry, bind, column, text_of
from polyreward.rewards.text import extract_tag

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_BOX = re.compile(rf"\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]")


def _floats(x: Any) -> Tensor:
    t = torch.as_tensor(x)
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def box_iou(a: Any, b: Any) -> Tensor:
    """Intersection over union of axis-aligned boxes ``[..., 4]`` in ``(x1, y1, x2, y2)`` order.

    Broadcasts over leading dimensions, returns ``[...]``. A degenerate or inverted box (``x2 <= x1``
    or ``y2 <= y1``) has area 0; when the union is empty the IoU is 0. NaN coordinates give 0.
    """
    a, b = _floats(a), _floats(b)
    if a.shape[-1:] != (4,) or b.shape[-1:] != (4,):
        raise ValueError(f"boxes need a last dimension of 4 (x1, y1, x2, y2), got {tuple(a.shape)} and {tuple(b.shape)}")
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    w = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    h = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = w * h
    union = area_a + area_b - inter
    iou = torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(union))
    return torch.nan_to_num(iou, nan=0.0)


def temporal_iou(a: Any, b: Any) -> Tensor:
    """Temporal IoU of intervals ``[..., 2]`` = ``(start, end)``, any time unit (it is scale-invariant).

    ``max(0, min(e1, e2) − max(s1, s2)) / (max(e1, e2) − min(s1, s2))`` as in Temporal-R1's
    ``tvg.py``. An inverted interval (``end < start``) or an empty hull gives 0 (the released code
    would divide by zero there and fall back to 0). Returns ``[...]``.
    """
    a, b = _floats(a), _floats(b)
    if a.shape[-1:] != (2,) or b.shape[-1:] != (2,):
        raise ValueError(f"intervals need a last dimension of 2 (start, end), got {tuple(a.shape)} and {tuple(b.shape)}")
    inter = (torch.minimum(a[..., 1], b[..., 1]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    hull = torch.maximum(a[..., 1], b[..., 1]) - torch.minimum(a[..., 0], b[..., 0])
    valid = (a[..., 1] >= a[..., 0]) & (b[..., 1] >= b[..., 0]) & (hull > 0)
    iou = torch.where(valid, inter / torch.where(valid, hull, torch.ones_like(hull)), torch.zeros_like(hull))
    return torch.nan_to_num(iou, nan=0.0)


# ---------------------------------------------------------------------------------------------- parsing
def _region(text: str, tag: str | None) -> str | None:
    return text if tag is None else extract_tag(text, tag)


def parse_box(text: str, tag: str | None = "answer") -> list[float] | None:
    """The first ``[x1, y1, x2, y2]`` inside the last ``<tag>…</tag>`` (or anywhere when ``tag=None``)."""
    region = _region(text, tag)
    match = _BOX.search(region) if region is not None else None
    return [float(v) for v in match.groups()] if match else None


def parse_interval(text: str, tag: str | None = "answer") -> list[float] | None:
    """``[start, end]`` from ``{"start_time": .., "end_time": ..}`` (numbers or numeric strings) or ``[s, e]``."""
    region = _region(text, tag)
    if region is None:
        return None
    try:
        data = json.loads(region)
        pair = [data["start_time"], data["end_time"]] if isinstance(data, dict) else data
        if not isinstance(pair, list) or len(pair) != 2:
            return None
        values = [float(v) for v in pair]
    except (ValueError, TypeError, KeyError):
        return None
    return values if all(math.isfinite(v) for v in values) else None


_TEMPORAL_FORMAT = re.compile(
    r'<think>.*?</think>\s*<answer>\s*\{\s*"start_time"\s*:\s*"?[\d.]+"?\s*,\s*"end_time"\s*:\s*"?[\d.]+"?\s*\}\s*</answer>',
    flags=re.S,
)


def temporal_format(text: str) -> float:
    """1.0 if ``text`` is exactly ``<think>…</think><answer>{"start_time": s, "end_time": e}</answer>``.

    Whitespace between the parts is free. Temporal-R1's regex requires the times as quoted strings
    (``"12.5"``); we also accept bare JSON numbers.
    """
    return 1.0 if _TEMPORAL_FORMAT.fullmatch(text) else 0.0


# ---------------------------------------------------------------------------------------------- batched
@dataclasses.dataclass(frozen=True)
class _BoxConfig:
    name: str
    solution_column: str
    tag: str | None
    threshold: float | None


def box_iou_reward(
    solution_column: str = "solution", tag: str | None = "answer", threshold: float | None = None, name: str = "box_iou"
) -> RewardFn:
    """Batched box IoU: the completion's ``[x1, y1, x2, y2]`` (see :func:`parse_box`) against ``solution_column``.

    ``threshold``: give ``1.0 if IoU >= threshold else 0.0`` instead of the continuous IoU. A ground
    truth of None gives None; an unparsable prediction gives 0.
    """
    return bind(_box_batch, _BoxConfig(name, solution_column, tag, threshold), name)


def _ground_truth(name: str, key: str, index: int, value: Any, size: int, what: str) -> list[float]:
    try:
        values = [float(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]
    except (TypeError, ValueError):
        values = []
    if len(values) != size or not all(math.isfinite(v) for v in values):
        raise bad_entry(name, key, index, what, value)
    return values


def _box_batch(cfg: _BoxConfig, prompts: Any, completions: Sequence[Any], **columns: Any) -> list[float | None]:
    solutions = column(cfg.name, columns, cfg.solution_column, len(completions))
    rows, preds, gts = [], [], []
    for i, (completion, gt) in enumerate(zip(completions, solutions, strict=True)):
        if gt is None:
            continue
        gts.append(_ground_truth(cfg.name, cfg.solution_column, i, gt, 4, "a box [x1, y1, x2, y2]"))
        preds.append(parse_box(text_of(cfg.name, i, completion), cfg.tag) or [math.nan] * 4)
        rows.append(i)
    out: list[float | None] = [None] * len(completions)
    if rows:
        iou = box_iou(torch.tensor(preds, dtype=torch.float64), torch.tensor(gts, dtype=torch.float64))
        if cfg.threshold is not None:
            iou = (iou >= cfg.threshold).to(iou.dtype)
        for i, value in zip(rows, iou.tolist(), strict=True):
            out[i] = value
    return out


@dataclasses.dataclass(frozen=True)
class _TemporalConfig:
    name: str
    timestamps_column: str
    duration_column: str | None
    tag: str | None
    iou_weight: float
    format_weight: float


def temporal_iou_reward(
    timestamps_column: str = "timestamps",
    duration_column: str | None = None,
    tag: str | None = "answer",
    name: str = "temporal_iou",
) -> RewardFn:
    """Batched temporal IoU of the completion's interval (:func:`parse_interval`) and ``timestamps_column``.

    Ground truth and prediction in the same unit (e.g. seconds). With ``duration_column``, the
    ground truth is normalized to ``[0, 1]`` and the prediction is divided by the duration, as in
    Temporal-R1. A ground truth of None gives None; an unparsable prediction gives 0.
    """
    return bind(_temporal_batch, _TemporalConfig(name, timestamps_column, duration_column, tag, 1.0, 0.0), name)


def temporal_format_reward(name: str = "temporal_format") -> RewardFn:
    """Batched :func:`temporal_format` (no ground truth needed)."""
    return bind(_format_batch, name, name)


def temporal_r1_reward(
    timestamps_column: str = "timestamps",
    duration_column: str | None = None,
    iou_weight: float = 0.5,
    format_weight: float = 0.5,
    name: str = "temporal_r1",
) -> RewardFn:
    """One scalar ``iou_weight·tIoU + format_weight·format`` (the Temporal-R1 combination).

    The spec's released combination is 0.5/0.5; the ``tvg.py`` we read (commit 95045b3) uses
    0.9/0.1. Prefer :func:`temporal_iou_reward` and :func:`temporal_format_reward` as two named
    rewards with weights, so each stays visible; this exists to reproduce the paper's single reward.
    """
    cfg = _TemporalConfig(name, timestamps_column, duration_column, "answer", iou_weight, format_weight)
    return bind(_temporal_batch, cfg, name)


def _format_batch(name: str, prompts: Any, completions: Sequence[Any], **columns: Any) -> list[float]:
    return [temporal_format(text_of(name, i, c)) for i, c in enumerate(completions)]


def _temporal_batch(cfg: _TemporalConfig, prompts: Any, completions: Sequence[Any], **columns: Any) -> list[float | None]:
    stamps = column(cfg.name, columns, cfg.timestamps_column, len(completions))
    durations = column(cfg.name, columns, cfg.duration_column, len(completions)) if cfg.duration_column else None
    rows, preds, gts, formats = [], [], [], []
    for i, (completion, gt) in enumerate(zip(completions, stamps, strict=True)):
        if gt is None:
            continue
        gts.append(_ground_truth(cfg.name, cfg.timestamps_column, i, gt, 2, "an interval [start, end]"))
        text = text_of(cfg.name, i, completion)
        pred = parse_interval(text, cfg.tag) or [math.nan, math.nan]
        if durations is not None:
            length = durations[i]
            if isinstance(length, bool) or not isinstance(length, numbers.Real) or not length > 0:
                raise bad_entry(cfg.name, cfg.duration_column, i, "a positive duration", length)
            pred = [v / length for v in pred]
        preds.append(pred)
        formats.append(temporal_format(text) if cfg.format_weight else 0.0)
        rows.append(i)
    out: list[float | None] = [None] * len(completions)
    if rows:
        iou = temporal_iou(torch.tensor(preds, dtype=torch.float64), torch.tensor(gts, dtype=torch.float64))
        score = cfg.iou_weight * iou + cfg.format_weight * torch.tensor(formats, dtype=torch.float64)
        for i, value in zip(rows, score.tolist(), strict=True):
            out[i] = value
    return out
