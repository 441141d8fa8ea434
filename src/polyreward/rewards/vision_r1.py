"""Vision-R1's criterion-driven detection reward with progressive rule refinement (arXiv 2503.18013).

Three rewards score a completion that lists objects as JSON ``[{"bbox_2d": [x1, y1, x2, y2],
"label": ...}, ...]`` against the ground-truth objects ``[[label, [x1, y1, x2, y2]], ...]``:

- ``format`` (dual format): 1 if the text is valid JSON whose ``bbox_2d`` entries are lists of 4,
  else 0; inverted for an image with no objects.
- ``recall``: predictions are matched one-to-one to ground truths (Hungarian, cost = L1 + class +
  (−GIoU)); a matched pair counts as found when its GIoU exceeds the stage's threshold;
  ``recall = found / num_instances``, then mapped through the recall band.
- ``precision``: the matched GIoUs mapped through the stage's band, averaged over the matched pairs.

Progressive rule refinement = :func:`refine` ("differentiation": below ``low`` → 0, above
``high`` → 1, in between unchanged) with thresholds that tighten at ``switch_step`` ("staged
progression"). Constants and formulas follow the released code (jefferyZhan/Griffon,
``Vision-R1/vision_r1/visionr1_qwen.py`` and ``trainer/qwen_trainer.py``); see
docs/rewards/vision-r1.md for what differs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from polyreward.rewards._columns import RewardFn, RewardInputError, bad_entry, bind, column, text_of

Part = Literal["format", "recall", "precision"]
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)"
_ITEM = re.compile(
    rf'\{{\s*"bbox_2d"\s*:\s*\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]\s*,\s*"label"\s*:\s*"([^"]+)"\s*\}}'
)
_FENCE = re.compile(r"```json\n|\n```")


# ---------------------------------------------------------------------------------------------- parsing
def _json_list(text: str) -> Any:
    body = text.strip()
    lines = body.splitlines()
    if lines and lines[0].startswith("```json"):
        body = "\n".join(lines[1:])
    body = body.split("```")[0]
    try:
        return json.loads(body)
    except (json.JSONDecodeError, ValueError):
        return None


def _box(value: Any) -> list[float] | None:
    if not isinstance(value, list) or len(value) != 4:
        return None
    try:
        box = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    ok = all(math.isfinite(v) for v in box) and box[0] < box[2] and box[1] < box[3]
    return box if ok else None


def parse_detections(text: str) -> list[tuple[list[float], str]] | None:
    """The ``(box, label)`` pairs of a completion, or None when no detection list can be read.

    First as JSON (a leading ```` ```json ```` fence is dropped), keeping items whose ``bbox_2d``
    is 4 numbers with ``x1 < x2`` and ``y1 < y2``; when that yields nothing, every
    ``{"bbox_2d": [...], "label": "..."}`` found by a regular expression (the released
    ``extract``). A valid empty JSON list gives ``[]``.
    """
    parsed = _json_list(text)
    out: list[tuple[list[float], str]] = []
    if isinstance(parsed, list):
        for item in parsed:
            box = _box(item.get("bbox_2d")) if isinstance(item, dict) else None
            if box is not None:
                out.append((box, str(item.get("label", ""))))
    if not out:
        for match in _ITEM.finditer(text):
            box = _box([float(v) for v in match.groups()[:4]])
            if box is not None:
                out.append((box, match.group(5)))
    if not out and not (isinstance(parsed, list) and not parsed):
        return None
    return out


def dual_format(text: str, num_instances: int) -> float:
    """Released ``dual_format_reward``: 1 when the text (without ```` ```json ```` fences) is valid
    JSON and every ``{"bbox_2d", "label"}`` item of a top-level list has a 4-element list box;
    0 otherwise. With ``num_instances == 0`` the value is inverted (``1 - that``)."""
    body = _FENCE.sub("", text).strip()
    try:
        data = json.loads(body)
        ok = 1.0
    except (json.JSONDecodeError, ValueError):
        data, ok = None, 0.0
    if isinstance(data, list):
        for item in data:
            if isinstance(item, dict) and "bbox_2d" in item and "label" in item:
                box = item["bbox_2d"]
                if not (isinstance(box, list) and len(box) == 4):
                    ok = 0.0
    return ok if num_instances > 0 else 1.0 - ok


# ---------------------------------------------------------------------------------------------- matching
def generalized_iou(a: Any, b: Any) -> Tensor:
    """Pairwise generalized IoU ``[N, M]`` of boxes ``a[N, 4]`` and ``b[M, 4]`` (x1, y1, x2, y2),
    ``IoU − (C − U) / C`` with ``C`` the smallest enclosing box (Rezatofighi et al. 2019)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    hull = (torch.maximum(a[:, None, 2:], b[None, :, 2:]) - torch.minimum(a[:, None, :2], b[None, :, :2])).prod(-1)
    return inter / union - (hull - union) / hull


def match_boxes(
    pred: Any, pred_labels: Sequence[str], gt: Any, gt_labels: Sequence[str]
) -> tuple[list[int], list[int], Tensor]:
    """One-to-one matching of ``pred[N, 4]`` to ``gt[M, 4]``: ``(pred rows, gt cols, GIoU[min(N, M)])``.

    Hungarian assignment on ``cost = L1(pred, gt) − 1[same label] − GIoU`` (the released
    ``BoxPriorMatcher``: box-first, the class term only breaks near-ties; labels compared without
    case or surrounding spaces). The L1 term is in the boxes' own units.
    """
    from scipy.optimize import linear_sum_assignment

    p, g = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(gt, dtype=torch.float64)
    giou = generalized_iou(p, g)
    same = torch.tensor([[a.strip().lower() == b.strip().lower() for b in gt_labels] for a in pred_labels])
    cost = torch.cdist(p, g, p=1) - same.double() - giou
    rows, cols = linear_sum_assignment(cost.numpy())
    return rows.tolist(), cols.tolist(), giou[rows, cols]


# ---------------------------------------------------------------------------------------------- rules
def refine(values: Any, low: float, high: float) -> Tensor:
    """Differentiation: ``x < low → 0``, ``x > high → 1``, ``low <= x <= high`` unchanged
    (the released ``modify_tensor`` / ``modify_list``). ``low == high`` binarizes at that value."""
    x = torch.as_tensor(values, dtype=torch.float64).clone()
    x[x < low] = 0.0
    x[x > high] = 1.0
    return x


@dataclasses.dataclass(frozen=True)
class Rules:
    """The thresholds in force: ``match`` (GIoU above which a match counts for recall),
    ``recall_band`` and ``precision_band`` (the ``(low, high)`` of :func:`refine`)."""

    match: float
    recall_band: tuple[float, float]
    precision_band: tuple[float, float]


@dataclasses.dataclass(frozen=True)
class Refinement:
    """Staged progression; the defaults are the released constants (switch at global step 1500)."""

    switch_step: int = 1500
    match: tuple[float, float] = (0.5, 0.75)
    recall_band: tuple[float, float] = (0.5, 0.75)
    precision_bands: tuple[tuple[float, float], tuple[float, float]] = ((0.5, 0.75), (0.75, 0.9))

    def __post_init__(self) -> None:
        if isinstance(self.switch_step, bool) or not isinstance(self.switch_step, int) or self.switch_step < 0:
            raise ValueError(f"switch_step: an integer >= 0, got {self.switch_step!r}")
        if len(self.match) != 2 or len(self.precision_bands) != 2:
            raise ValueError(f"match and precision_bands: one entry per stage (2), got {self.match}, {self.precision_bands}")
        bands = [("recall_band", self.recall_band), *(("precision_bands", b) for b in self.precision_bands)]
        for name, band in bands:
            if len(band) != 2 or not 0.0 <= band[0] <= band[1] <= 1.0:
                raise ValueError(f"{name}: need (low, high) with 0 <= low <= high <= 1, got {band}")

    def stage(self, step: int) -> int:
        """0 before ``switch_step``, 1 from it on."""
        return 0 if step < self.switch_step else 1

    def rules(self, stage: int | None) -> Rules:
        """The rules of ``stage``; None is the released non-adaptive rule (match 0.5, no band)."""
        if stage is None:
            return Rules(self.match[0], (0.0, 1.0), (0.0, 1.0))
        return Rules(self.match[stage], self.recall_band, self.precision_bands[stage])


def recall_score(giou: Any, num_instances: int, num_predictions: int, rules: Rules) -> float:
    """``refine(#{GIoU > match} / num_instances, *recall_band)``; no predictions: 1 if the image has
    no objects else 0; predictions on an image without objects: 0 (the released code divides by 0)."""
    if num_predictions == 0:
        return 0.0 if num_instances > 0 else 1.0
    if num_instances == 0:
        return 0.0
    found = float(refine(giou, rules.match, rules.match).sum())
    return float(refine([found / num_instances], *rules.recall_band)[0])


def precision_score(
    giou: Any,
    num_instances: int,
    num_predictions: int,
    rules: Rules,
    denominator: Literal["matched", "predictions"] = "matched",
) -> float:
    """Mean of ``refine(GIoU, *precision_band)`` over the matched pairs (``matched``, the Qwen2.5-VL
    release) or its sum over all predictions (``predictions``, the EasyR1 release, which penalizes
    extra boxes). No predictions: 1 if the image has no objects else 0; predictions on an image
    without objects: 0."""
    if num_predictions == 0:
        return 0.0 if num_instances > 0 else 1.0
    if num_instances == 0:
        return 0.0
    refined = refine(giou, *rules.precision_band)
    return float(refined.mean() if denominator == "matched" else refined.sum() / num_predictions)


# ---------------------------------------------------------------------------------------------- batched
@dataclasses.dataclass(frozen=True)
class _Config:
    name: str
    part: Part
    solution_column: str
    num_column: str | None
    refinement: Refinement
    adaptive: bool
    stage: int | None
    denominator: str


def vision_r1_reward(
    part: Part = "precision",
    solution_column: str = "solution",
    num_instances_column: str | None = "num_instances",
    switch_step: int = 1500,
    match: tuple[float, float] = (0.5, 0.75),
    recall_band: tuple[float, float] = (0.5, 0.75),
    precision_bands: tuple[tuple[float, float], tuple[float, float]] = ((0.5, 0.75), (0.75, 0.9)),
    adaptive: bool = True,
    stage: int | None = None,
    precision_denominator: Literal["matched", "predictions"] = "matched",
    name: str | None = None,
) -> RewardFn:
    """One Vision-R1 reward (``part``: ``format``, ``recall`` or ``precision``) as a batched function.

    Ground truth: ``solution_column`` holds ``[[label, [x1, y1, x2, y2]], ...]`` (or that as a JSON
    string), in the frame of the predicted boxes; ``num_instances_column`` (None: the length of the
    solution). The stage comes from ``stage`` when given, else from the step: a ``step`` keyword
    (an int or one per sample) or TRL's ``trainer_state.global_step``. ``adaptive=False`` is the
    released rule without refinement. A ground truth of None gives None.
    """
    if part not in ("format", "recall", "precision"):
        raise ValueError(f"part: one of ['format', 'recall', 'precision'], got {part!r}")
    if precision_denominator not in ("matched", "predictions"):
        raise ValueError(f"precision_denominator: 'matched' or 'predictions', got {precision_denominator!r}")
    if stage not in (None, 0, 1):
        raise ValueError(f"stage: None (from the step), 0 or 1, got {stage!r}")
    refinement = Refinement(switch_step, tuple(match), tuple(recall_band), tuple(tuple(b) for b in precision_bands))
    name = name or f"vision_r1_{part}"
    config = _Config(name, part, solution_column, num_instances_column, refinement, adaptive, stage, precision_denominator)
    return bind(_batch, config, name)


def _step_of(cfg: _Config, columns: dict[str, Any], count: int) -> list[int | None]:
    """Per-sample training step (None: non-adaptive rule)."""
    if not cfg.adaptive or cfg.stage is not None:
        return [None] * count
    step = columns.get("step")
    if step is None and columns.get("trainer_state") is not None:
        step = getattr(columns["trainer_state"], "global_step", None)
    if step is None:
        raise RewardInputError(
            f"reward {cfg.name!r}: progressive rule refinement needs the training step (a 'step' keyword, which "
            "RewardSet.score passes, or TRL's trainer_state); or set params.stage (0 or 1), or adaptive: false "
            "(docs/rewards/vision-r1.md)"
        )
    return list(step) if isinstance(step, (list, tuple)) else [int(step)] * count


def _solution(cfg: _Config, index: int, value: Any) -> tuple[list[list[float]], list[str]]:
    raw = value
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise bad_entry(cfg.name, cfg.solution_column, index, "JSON [[label, [x1, y1, x2, y2]], ...]", raw) from None
    boxes, labels = [], []
    for item in value if isinstance(value, list) else [None]:
        box = _box(list(item[1])) if isinstance(item, (list, tuple)) and len(item) == 2 else None
        if box is None or not isinstance(item[0], str):
            raise bad_entry(cfg.name, cfg.solution_column, index, "[[label, [x1, y1, x2, y2]], ...] with x1<x2, y1<y2", raw)
        boxes.append(box)
        labels.append(item[0])
    return boxes, labels


def _score_one(cfg: _Config, text: str, gt: tuple[list[list[float]], list[str]], num: int, step: int | None) -> float:
    if cfg.part == "format":
        return dual_format(text, num)
    stage = cfg.stage if cfg.stage is not None else (None if step is None else cfg.refinement.stage(step))
    rules = cfg.refinement.rules(stage)
    detections = parse_detections(text) or []
    giou: Any = []
    if detections and gt[0]:
        _, _, giou = match_boxes([d[0] for d in detections], [d[1] for d in detections], gt[0], gt[1])
    if cfg.part == "recall":
        return recall_score(giou, num, len(detections), rules)
    return precision_score(giou, num, len(detections), rules, cfg.denominator)  # type: ignore[arg-type]


def _batch(cfg: _Config, prompts: Any, completions: Sequence[Any], **columns: Any) -> list[float | None]:
    solutions = column(cfg.name, columns, cfg.solution_column, len(completions))
    nums = column(cfg.name, columns, cfg.num_column, len(completions)) if cfg.num_column else [None] * len(completions)
    steps = _step_of(cfg, columns, len(completions)) if cfg.part != "format" else [None] * len(completions)
    out: list[float | None] = []
    for i, (completion, solution) in enumerate(zip(completions, solutions, strict=True)):
        if solution is None:
            out.append(None)
            continue
        gt = _solution(cfg, i, solution)
        num = len(gt[0]) if nums[i] is None else nums[i]
        if isinstance(num, bool) or not isinstance(num, int) or num < 0:
            raise bad_entry(cfg.name, str(cfg.num_column), i, "a count >= 0", num)
        out.append(_score_one(cfg, text_of(cfg.name, i, completion), gt, num, steps[i]))
    return out
