"""Faulty reward functions for the fault-injection matrix (module level: process-pool workers import them).

Every function scores completion ``c`` as ``len(c) + 1`` (never 0) where it does not fail, so a
silent 0 anywhere in a result is a bug, not a coincidence. ``BAD`` marks the completion that the
per-sample faults fail on.
"""

from __future__ import annotations

import math
import time

BAD = "boom"
HANG_S = 3.0  # longer than every timeout in the tests, short enough that an abandoned thread ends soon
SLOW_S = 0.2


def truth(completions) -> list[float]:
    return [float(len(c) + 1) for c in completions]


def good(prompts, completions, **kwargs):
    return truth(completions)


def exception(prompts, completions, **kwargs):
    if BAD in completions:
        raise RuntimeError(f"cannot score {BAD!r}")
    return truth(completions)


def calls_exit(prompts, completions, **kwargs):
    if BAD in completions:
        raise SystemExit(3)  # what sys.exit(3) does
    return truth(completions)


def nan(prompts, completions, **kwargs):
    return [math.nan if c == BAD else v for c, v in zip(completions, truth(completions), strict=True)]


def inf(prompts, completions, **kwargs):
    return [-math.inf if c == BAD else v for c, v in zip(completions, truth(completions), strict=True)]


def wrong_length(prompts, completions, **kwargs):
    return [*truth(completions), 1.0]


def wrong_type_str(prompts, completions, **kwargs):
    return "1.0"


def wrong_type_item(prompts, completions, **kwargs):
    return ["high" if c == BAD else v for c, v in zip(completions, truth(completions), strict=True)]


def returns_none(prompts, completions, **kwargs):
    return None


def not_applicable(prompts, completions, **kwargs):
    """Valid output, not a fault: None means "does not apply" (NaN, not counted as a failure)."""
    return [None if c == BAD else v for c, v in zip(completions, truth(completions), strict=True)]


def hang(prompts, completions, **kwargs):
    time.sleep(HANG_S)
    return truth(completions)


def slow(prompts, completions, **kwargs):
    time.sleep(SLOW_S)
    return truth(completions)
