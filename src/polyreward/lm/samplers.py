"""Prompt samplers: controllers that choose which rows a step trains on.

- ``learning_progress``: tasks sampled by ``|fast EMA - slow EMA|`` of their success (the
  learning-progress curriculum of XLand-style open-ended training; Kanitscheider et al. 2021).
- ``value_resample``: VSPO-style (arXiv 2512.07478) replacement of rows whose last group had zero
  reward variance by the rows of highest estimated value.
- ``variance_filter``: variance-aware data selection (VideoLLM RL line, arXiv 2506.01908): probe
  every row ``runs`` times before training and keep the rows whose rewards vary.
- ``staged_tasks``: a staged multi-task mixture (task weights per stage of training).

The pure math (:func:`ema_update`, :func:`vspo_values`, :func:`stage_weights`, and
:func:`~polyreward.rewards.selection.learning_progress_probs`, shared with the gym curriculum) takes
numbers and tensors only; the classes hold the statistics.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import defaultdict
from typing import Any

import torch
from torch import Tensor

from polyreward.batch import RewardBatch
from polyreward.lm.controllers import Controller, Probe, StepPlan, check_reward, group_values, register
from polyreward.lm.data import _epoch_order
from polyreward.rewards.selection import (
    learning_progress_probs,
    pass_rate_band,
    reward_variance,
    select_by_reward_variance,
)


def ema_update(fast: float, slow: float, value: float, alpha_fast: float, alpha_slow: float) -> tuple[float, float]:
    """One step of both EMAs: ``x <- x + alpha (value - x)``."""
    return fast + alpha_fast * (value - fast), slow + alpha_slow * (value - slow)


def vspo_values(variance: Tensor, count: Tensor, bonus: float) -> Tensor:
    """Estimated value of each row: ``var + bonus / sqrt(1 + n)``, ``inf`` for rows never tried.

    ``var[M]``: estimated reward variance within a group of the row (the GRPO signal it would give);
    ``count[M]``: times observed. The bonus is the uncertainty term; VSPO's exact task-value metric
    ("balancing difficulty and uncertainty") is not confirmed, this is our stand-in.
    """
    value = variance.double().nan_to_num(0.0) + bonus / torch.sqrt(1.0 + count.double())
    return torch.where(count > 0, value, torch.full_like(value, math.inf))


def stage_weights(step: int, stages: list[dict[str, Any]]) -> tuple[int, dict[str, float]]:
    """``(stage index, task weights)`` at ``step``: the first stage whose ``until`` exceeds it (the
    last stage, without ``until``, covers the rest)."""
    for i, stage in enumerate(stages):
        if "until" not in stage or step < stage["until"]:
            return i, dict(stage["weights"])
    return len(stages) - 1, dict(stages[-1]["weights"])


def _sample_by_task(tasks: dict[str, list[int]], probs: dict[str, float], size: int, rng: random.Random) -> list[int]:
    names = [t for t in tasks if probs.get(t, 0.0) > 0]
    picked = rng.choices(names, weights=[probs[t] for t in names], k=size)
    return [rng.choice(tasks[t]) for t in picked]


def _tasks_of(rows: list[dict[str, Any]], column: str | None) -> dict[str, list[int]]:
    tasks: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        tasks[str(i) if column is None else str(row.get(column))].append(i)
    return dict(tasks)


def _check_column(data, column: str | None, kind: str) -> None:
    if column is not None and column not in data.rows[0]:
        raise ValueError(f"{kind}: no column {column!r} in the task rows (columns: {sorted(data.rows[0])})")


@register("learning_progress")
@dataclasses.dataclass
class LearningProgress(Controller):
    """Sample tasks by learning progress ``|fast - slow|`` of the success EMAs of ``reward``.

    ``task_column``: rows with the same value form one task (None: every row is a task).
    Success of a group is the mean of ``reward`` over its samples (a pass rate for 0/1 rewards).
    """

    chooses_rows = True
    reward: str
    task_column: str | None = None
    alpha_fast: float = 0.5
    alpha_slow: float = 0.1
    epsilon: float = 0.1
    ema: dict[str, list[float]] = dataclasses.field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.alpha_slow < self.alpha_fast <= 1:
            raise ValueError(f"need 0 < alpha_slow < alpha_fast <= 1, got {self.alpha_slow}, {self.alpha_fast}")
        if not 0 <= self.epsilon <= 1:
            raise ValueError(f"epsilon: must be in [0, 1], got {self.epsilon}")

    def bind(self, rewards, data, seed: int) -> None:
        check_reward(rewards, self.reward, self.kind, "reward")
        _check_column(data, self.task_column, self.kind)
        self._tasks, self._rows, self._seed = _tasks_of(data.rows, self.task_column), data.rows, seed

    def probabilities(self) -> dict[str, float]:
        names = list(self._tasks)
        lp = torch.tensor([abs(self.ema[t][0] - self.ema[t][1]) if t in self.ema else 0.0 for t in names])
        seen = torch.tensor([t in self.ema for t in names])
        return dict(zip(names, learning_progress_probs(lp, seen, self.epsilon).tolist(), strict=True))

    def plan(self, step: int, plan: StepPlan, probe: Probe) -> dict[str, float]:
        rng = random.Random(self._seed * 1_000_003 + step)
        probs = self.probabilities()
        plan.indices = _sample_by_task(self._tasks, probs, plan.size, rng)
        lp = [abs(f - s) for f, s in self.ema.values()]
        return {"curriculum/lp_mean": sum(lp) / len(lp) if lp else 0.0, "curriculum/p_max": max(probs.values())}

    def observe(self, step: int, batch: RewardBatch, indices: list[int], rows, texts) -> dict[str, float]:
        success = group_values(batch, self.reward).nanmean(-1)
        for i, value in zip(indices, success.tolist(), strict=True):
            if math.isnan(value):
                continue
            task = str(i) if self.task_column is None else str(self._rows[i][self.task_column])
            if task not in self.ema:
                self.ema[task] = [value, value]
            else:
                self.ema[task] = list(ema_update(*self.ema[task], value, self.alpha_fast, self.alpha_slow))
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema = {k: list(v) for k, v in state.get("ema", {}).items()}


@register("value_resample")
@dataclasses.dataclass
class ValueResample(Controller):
    """VSPO-style resampling: a row of the seeded stream whose last group had reward variance
    ``<= min_var`` in ``reward`` is replaced by the not-yet-picked row of highest
    :func:`vspo_values` (rows never tried come first). Variance estimates are EMAs (``alpha``)."""

    chooses_rows = True
    reward: str
    alpha: float = 0.5
    min_var: float = 0.0
    bonus: float = 0.1
    stats: dict[str, list[float]] = dataclasses.field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.alpha <= 1 or self.min_var < 0 or self.bonus < 0:
            raise ValueError(
                f"need 0 < alpha <= 1, min_var >= 0, bonus >= 0; got {self.alpha}, {self.min_var}, {self.bonus}"
            )

    def bind(self, rewards, data, seed: int) -> None:
        check_reward(rewards, self.reward, self.kind, "reward")
        self._data, self._seed = data, seed

    def plan(self, step: int, plan: StepPlan, probe: Probe) -> dict[str, float]:
        indices = self._data.indices(plan.position, plan.size)
        flat = [k for k, i in enumerate(indices) if str(i) in self.stats and self.stats[str(i)][0] <= self.min_var]
        if flat:
            m = len(self._data.rows)
            variance = torch.tensor([self.stats.get(str(i), [math.nan, 0])[0] for i in range(m)])
            count = torch.tensor([self.stats.get(str(i), [0.0, 0])[1] for i in range(m)])
            value = vspo_values(variance, count, self.bonus)
            rng = random.Random(self._seed * 1_000_003 + step)
            order = sorted(range(m), key=lambda i: (-float(value[i]), rng.random()))
            taken = set(indices)
            spare = [i for i in order if i not in taken and float(value[i]) > self.min_var]
            for k, new in zip(flat, spare, strict=False):
                indices[k] = new
        plan.indices = indices
        return {
            "vspo/replaced": float(min(len(flat), len(indices))),
            "vspo/known_flat_rows": float(sum(v <= self.min_var for v, _ in self.stats.values())),
        }

    def observe(self, step: int, batch: RewardBatch, indices: list[int], rows, texts) -> dict[str, float]:
        variance = reward_variance(group_values(batch, self.reward))
        for i, var in zip(indices, variance.tolist(), strict=True):
            if math.isnan(var):
                continue
            old, n = self.stats.get(str(i), [var, 0])
            self.stats[str(i)] = [var if n == 0 else old + self.alpha * (var - old), n + 1]
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"stats": self.stats}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats = {k: list(v) for k, v in state.get("stats", {}).items()}


@register("variance_filter")
@dataclasses.dataclass
class VarianceFilter(Controller):
    """Before the first step, sample ``runs`` completions of each row (the first ``max_rows`` of the
    stream when set) at ``temperature``; keep rows with reward variance ``> min_var`` (or the
    ``top_frac`` most variable) and pass rate in ``[low, high]``; train on the kept rows only."""

    chooses_rows = True
    reward: str
    runs: int = 4
    temperature: float = 1.0
    min_var: float | None = 0.0
    top_frac: float | None = None
    low: float = 0.0
    high: float = 1.0
    max_rows: int | None = None
    kept: list[int] = dataclasses.field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.runs < 2:
            raise ValueError(f"runs: needs >= 2 to measure a variance, got {self.runs}")
        pass_rate_band(torch.zeros(0), self.low, self.high)  # validates the band

    def bind(self, rewards, data, seed: int) -> None:
        check_reward(rewards, self.reward, self.kind, "reward")
        self._data, self._seed = data, seed

    def plan(self, step: int, plan: StepPlan, probe: Probe) -> dict[str, float]:
        metrics = {}
        if not self.kept:
            metrics = self._select(probe)
        epoch_positions = range(plan.position, plan.position + plan.size)
        plan.indices = [
            self.kept[_epoch_order(self._seed, len(self.kept), p // len(self.kept))[p % len(self.kept)]]
            for p in epoch_positions
        ]
        return metrics

    def _select(self, probe: Probe) -> dict[str, float]:
        m = len(self._data.rows) if self.max_rows is None else min(self.max_rows, len(self._data.rows))
        candidates = self._data.indices(0, m) if m < len(self._data.rows) else list(range(m))
        batch, _ = probe([self._data.rows[i] for i in candidates], self.runs, self.temperature)
        values = batch[self.reward].reshape(len(candidates), self.runs)
        keep = select_by_reward_variance(values, self.min_var, self.top_frac)
        keep &= pass_rate_band(values.nanmean(-1), self.low, self.high)
        self.kept = [i for i, k in zip(candidates, keep.tolist(), strict=True) if k]
        if not self.kept:
            raise ValueError(
                f"variance_filter: none of the {m} probed rows has varying {self.reward!r} rewards over "
                f"{self.runs} runs (min_var={self.min_var}, band=[{self.low}, {self.high}]); relax them or raise runs"
            )
        return {"select/probed": float(m), "select/kept": float(len(self.kept))}

    def state_dict(self) -> dict[str, Any]:
        return {"kept": self.kept}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kept = list(state.get("kept", []))


@register("staged_tasks")
@dataclasses.dataclass
class StagedTasks(Controller):
    """A staged multi-task mixture: ``stages = [{until: 20, weights: {easy: 1}}, {weights: {easy: 0.3,
    hard: 0.7}}]`` samples tasks (values of ``column``) by the weights of the current stage."""

    chooses_rows = True
    stages: list[dict[str, Any]]
    column: str = "task"

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("stages: need at least one stage")
        ends = [s.get("until") for s in self.stages]
        if any(e is None for e in ends[:-1]) or ends[:-1] != sorted(set(ends[:-1])):
            raise ValueError(f"stages: every stage but the last needs an increasing 'until', got {ends}")
        for i, stage in enumerate(self.stages):
            weights = stage.get("weights")
            if set(stage) - {"until", "weights"} or not isinstance(weights, dict) or not weights:
                raise ValueError(f"stages[{i}]: expected {{until?, weights: {{task: weight}}}}, got {stage!r}")
            if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
                raise ValueError(f"stages[{i}].weights: need weights >= 0, one > 0, got {weights}")

    def bind(self, rewards, data, seed: int) -> None:
        _check_column(data, self.column, self.kind)
        self._tasks, self._seed = _tasks_of(data.rows, self.column), seed
        for i, stage in enumerate(self.stages):
            unknown = sorted(set(map(str, stage["weights"])) - set(self._tasks))
            if unknown:
                raise ValueError(
                    f"staged_tasks.stages[{i}]: tasks {unknown} not in column {self.column!r}: {sorted(self._tasks)}"
                )

    def plan(self, step: int, plan: StepPlan, probe: Probe) -> dict[str, float]:
        index, weights = stage_weights(step, self.stages)
        probs = {str(k): float(v) for k, v in weights.items()}
        plan.indices = _sample_by_task(self._tasks, probs, plan.size, random.Random(self._seed * 1_000_003 + step))
        return {"curriculum/stage": float(index)}
