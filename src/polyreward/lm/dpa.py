"""Directional Preference Alignment (DPA, arXiv 2402.18571): preference-conditioned rejection sampling.

The user preference is a unit vector ``v = (cos θ, sin θ)`` over two (or more) named rewards; the
prompt carries ``v``; of the G samples of a prompt the one with the largest ``v·r`` is kept and
trained on (rejection-sampling fine-tuning). In this GRPO trainer the "SFT on the kept sample"
is a policy-gradient step with advantage 1 on the kept sample and 0 elsewhere: on-policy and in a
single epoch its gradient is ``-∇ log p(kept)``, the SFT gradient (scaled by the loss reduction).
:func:`directional_sweep` evaluates a policy along directions; :func:`pareto_mask` marks the front.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from polyreward.advantages import AdvantageResult, best_in_group
from polyreward.batch import RewardBatch
from polyreward.lm.controllers import Controller, Probe, StepPlan, check_reward, register


def preference_vector(theta_deg: float) -> Tensor:
    """``v = (cos θ, sin θ)`` for an angle in degrees (0° = only the first reward)."""
    t = math.radians(theta_deg)
    return torch.tensor([math.cos(t), math.sin(t)], dtype=torch.float64)


def rejection_pick(rewards: Tensor, group_index: Tensor, vectors: Tensor) -> Tensor:
    """``keep[N]`` (bool): the sample of each group with the largest ``v_g · r_i``.

    ``rewards[N, K]`` (NaN counts as 0), ``group_index[N]`` in ``0..P-1``, ``vectors[P, K]``.
    Ties go to the first sample of the group.
    """
    score = (torch.nan_to_num(rewards.double()) * vectors.double()[group_index]).sum(-1)
    best = best_in_group(score, group_index, vectors.shape[0])
    keep = torch.zeros(score.shape[0], dtype=torch.bool)
    keep[best[best < score.shape[0]]] = True  # a group with no sample has no pick
    return keep


def pareto_mask(points: Tensor) -> Tensor:
    """``mask[M]``: points not dominated by another (every coordinate >=, one >), maximizing all."""
    p = points.double()
    ge = (p[None, :, :] >= p[:, None, :]).all(-1)  # ge[i, j]: j >= i everywhere
    gt = (p[None, :, :] > p[:, None, :]).any(-1)
    return ~(ge & gt).any(-1)


def condition_prompt(prompt: Any, vector: Sequence[float], names: Sequence[str]) -> Any:
    """The prompt with the preference in its system message (a plain prompt gets it prepended)."""
    text = "Preference: " + ", ".join(f"{n}={v:.2f}" for n, v in zip(names, vector, strict=True)) + "."
    if isinstance(prompt, str):
        return f"{text} {prompt}"
    messages = copy.deepcopy(list(prompt))
    if messages and messages[0].get("role") == "system":
        messages[0]["content"] = f"{text} {messages[0]['content']}"
        return messages
    return [{"role": "system", "content": text}, *messages]


@register("dpa")
@dataclasses.dataclass
class DirectionalPreference(Controller):
    """DPA training: each prompt gets an angle drawn uniformly from ``angles`` (degrees), the
    vector goes into its prompt, and the advantage becomes 1 on the group's best ``v·r`` sample.
    After a controller that chooses the rows (e.g. ``exit``), it conditions those rows."""

    conditions_rows = True
    objectives: list[str]
    angles: list[float] = dataclasses.field(default_factory=lambda: [0.0, 90.0])
    prompt_column: str = "prompt"
    current: list[list[float]] = dataclasses.field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if len(self.objectives) != 2 or len(self.angles) != 2 or self.angles[0] > self.angles[1]:
            raise ValueError(f"need two objectives and angles [low, high] in degrees, got {self.objectives}, {self.angles}")

    def bind(self, rewards, data, seed: int) -> None:
        for name in self.objectives:
            check_reward(rewards, name, self.kind, "objectives")
        self._data, self._seed = data, seed

    def plan(self, step: int, plan: StepPlan, probe: Probe) -> dict[str, float]:
        rng = random.Random(self._seed * 1_000_003 + step + 7)
        indices = plan.indices if plan.indices is not None else self._data.indices(plan.position, plan.size)
        thetas = [rng.uniform(*self.angles) for _ in indices]
        self.current = [preference_vector(t).tolist() for t in thetas]
        base = plan.rows if plan.rows is not None else [self._data.rows[i] for i in indices]  # an earlier chooser's
        plan.indices = indices
        plan.rows = [
            {**row, self.prompt_column: condition_prompt(row[self.prompt_column], v, self.objectives)}
            for row, v in zip(base, self.current, strict=True)
        ]
        return {"dpa/angle_mean": sum(thetas) / len(thetas)}

    def advantages(self, batch: RewardBatch, result: AdvantageResult) -> AdvantageResult:
        rewards = torch.stack([batch[n] for n in self.objectives], -1)
        vectors = torch.tensor(self.current, dtype=torch.float64)
        keep = rejection_pick(rewards, batch.group_index, vectors).to(result.advantages.dtype)
        kept_score = (torch.nan_to_num(rewards.double()) * vectors[batch.group_index]).sum(-1)[keep.bool()]
        return AdvantageResult(advantages=keep, metrics={**result.metrics, "dpa/kept_score_mean": float(kept_score.mean())})


def directional_sweep(score_at: Callable[[Tensor], Tensor], angles: Sequence[float]) -> list[dict[str, Any]]:
    """Evaluate along directions: ``score_at(v) -> rewards[N, K]`` for each angle; returns one
    record per angle with the mean of each objective and whether it is on the Pareto front."""
    means = [torch.nan_to_num(score_at(preference_vector(a)).double()).mean(0) for a in angles]
    front = pareto_mask(torch.stack(means)).tolist()
    return [
        {"angle": float(a), "means": m.tolist(), "pareto": bool(f)} for a, m, f in zip(angles, means, front, strict=True)
    ]
