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


@dataclasses.dataclass(frozen=True)
class Piecewise:
    """Linear interpolation through ``points = ((step, weight), ...)``, flat outside them."""

    points: tuple[tuple[int, float], ...]

    def __post_init__(self) -> None:
        steps = [s for s, _ in self.points]
        if not self.points or steps != sorted(set(steps)):
            raise ValueError(f"Piecewise schedule: points need strictly increasing steps, got {self.points}")

    def __call__(self, step: int) -> float:
        steps = [s for s, _ in self.points]
        i = bisect.bisect_right(steps, step)
        if i == 0:
            return self.points[0][1]
        if i == len(self.points):
            return self.points[-1][1]
        (s0, w0), (s1, w1) = self.points[i - 1], self.points[i]
        return w0 + (w1 - w0) * (step - s0) / (s1 - s0)


@dataclasses.dataclass(frozen=True)
class Alternating:
    """``a`` for the first ``first`` steps of every ``window``-step window, ``b`` for the rest.

    Parallel-R1's alternating reward (arXiv 2509.07980): within each window most steps train on the
    accuracy reward and the others on the parallel-aware reward. Give the accuracy reward
    ``Alternating(window, first, a=1, b=0)`` and the other one ``Alternating(window, first, a=0, b=1)``.
    ``Alternating(10, 8, 1.0, 0.0)`` is 1 for steps 0..7, 0 for 8..9, 1 for 10..17, ...
    The paper's window and split are not confirmed from its text or code; choose them per run.
    """

    window: int
    first: int
    a: float = 1.0
    b: float = 0.0

    def __post_init__(self) -> None:
        if self.window < 1 or not 0 <= self.first <= self.window:
            raise ValueError(
                f"Alternating schedule: needs window >= 1 and 0 <= first <= window, got window={self.window}, "
                f"first={self.first}"
            )

    def __call__(self, step: int) -> float:
        return self.a if step % self.window < self.first else self.b


def toolrl_dynamic(steps: int = 150) -> dict[str, Schedule]:
    """ToolRL's ``SCHEDULEREWARD`` as weights for ``toolrl_format`` ({0, 1}) and ``toolrl_correctness`` ([-3, 3]).

    In the released ``rlla.py`` the format reward's range moves from [-2, 2] toward [0, 1], but its
    minimum is clipped at -1, so it ends at [-1, 1]; the correctness range widens from [-2, 2] to
    [-3, 3], both linearly over ``steps`` (150). A range [lo, hi] applied to a {0, 1} reward is
    ``lo + (hi - lo) r``; the offset ``lo`` cancels in group-normalized advantages, so the schedule
    is the width ``hi - lo``: format 4 -> 2.5 (step 75, where the minimum reaches -1) -> 2, and
    correctness (already on [-3, 3]) 2/3 -> 1. Spec note: the project spec says the format range ends
    at [0, 1]; the code's clip at -1 is followed here.
    """
    half = steps // 2
    return {
        "toolrl_format": Piecewise(((0, 4.0), (half, 4.0 - 3.0 * half / steps), (steps, 2.0))),
        "toolrl_correctness": Linear(start=2 / 3, end=1.0, steps=steps),
    }


def weight_at(weight: float | Schedule, step: int) -> float:
    """The weight a float or a schedule gives at ``step``."""
    return float(weight(step)) if callable(weight) else float(weight)
