"""Reward-weight schedules over training steps: ``schedule(step) -> weight``.

A :class:`~polyreward.rewards.component.RewardComponent` takes a float or one of these as its
weight; the reward set evaluates it at each step, so curricula live in the reward set rather than
inside reward functions.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Protocol, runtime_checkable


@runtime_checkable
class Schedule(Protocol):
    def __call__(self, step: int) -> float: ...


@dataclasses.dataclass(frozen=True)
class Constant:
    """The same weight at every step."""

    value: float

    def __call__(self, step: int) -> float:
        return self.value


@dataclasses.dataclass(frozen=True)
class Linear:
    """``start`` until ``delay``, then linear to ``end`` over ``steps`` steps, then ``end``."""

    start: float
    end: float
    steps: int
    delay: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.delay < 0:
            raise ValueError(
                f"Linear schedule: steps must be >= 1 and delay >= 0, got steps={self.steps}, delay={self.delay}"
            )

    def __call__(self, step: int) -> float:
        progress = min(max((step - self.delay) / self.steps, 0.0), 1.0)
        return self.start + (self.end - self.start) * progress


@dataclasses.dataclass(frozen=True)
class Step:
    """Piecewise constant: ``values[i]`` from ``boundaries[i-1]`` (inclusive) to ``boundaries[i]``.

    ``Step(boundaries=(30,), values=(1.0, 3.0))`` is 1 for steps 0..29 and 3 from step 30 on
    (ToolRL's ``MAX1STEP30MAX3`` switch, expressed as a weight).
    """

    boundaries: tuple[int, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError(
                f"Step schedule: needs one more value than boundaries, got {len(self.values)} values "
                f"for {len(self.boundaries)} boundaries"
            )
        if list(self.boundaries) != sorted(self.boundaries):
            raise ValueError(f"Step schedule: boundaries must increase, got {self.boundaries}")

    def __call__(self, step: int) -> float:
        return self.values[bisect.bisect_right(self.boundaries, step)]


def weight_at(weight: float | Schedule, step: int) -> float:
    """The weight a float or a schedule gives at ``step``."""
    return float(weight(step)) if callable(weight) else float(weight)
