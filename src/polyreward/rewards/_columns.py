"""Shared plumbing for the built-in rewards: dataset columns, input errors, picklable named functions.

Batched rewards follow TRL: ``fn(prompts, completions, **columns) -> list[float | None]``, with each
dataset column arriving as a keyword list aligned with ``completions``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from polyreward.rewards.text import completion_text

RewardFn = Callable[..., list[float | None]]  # fn(prompts, completions, **columns)

# Keyword arguments that trainers pass besides dataset columns (TRL 1.16 and polyreward).
TRAINER_KWARGS = frozenset(
    {"completion_ids", "trainer_state", "log_extra", "log_metric", "environments", "turns", "tool_calls"}
)


class RewardInputError(ValueError):
    """A reward got input it cannot score (missing column, wrong reference type): a bug, not a low score."""


class MissingColumnError(RewardInputError, KeyError):
    """A required dataset column is absent (also a ``KeyError``, as a missing key is)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class NamedReward:
    """``impl(config, prompts, completions, **columns)`` under a name: picklable (for the process pool)
    and named for both polyreward and TRL (which reads ``__name__``; it unwraps ``functools.partial``
    to the wrapped function's name, so a partial would lose ours)."""

    def __init__(self, impl: Callable[..., Any], config: Any, name: str):
        if not name or not isinstance(name, str):
            raise ValueError(f"a reward needs a non-empty string name, got {name!r}")
        self.impl, self.config, self.__name__ = impl, config, name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]:
        return self.impl(self.config, prompts, completions, **columns)

    def __repr__(self) -> str:
        return f"<reward {self.__name__}>"


def bind(impl: Callable[..., Any], config: Any, name: str) -> NamedReward:
    return NamedReward(impl, config, name)


def column(reward: str, columns: Mapping[str, Any], key: str, count: int) -> list[Any]:
    """Dataset column ``key`` as a list of ``count`` entries; errors name the reward and the column."""
    if key not in columns:
        present = sorted(k for k in columns if k not in TRAINER_KWARGS)
        raise MissingColumnError(f"reward {reward!r}: needs the dataset column {key!r}; the batch has columns {present}")
    values = columns[key]
    if not isinstance(values, (list, tuple)) or len(values) != count:
        shape = f"{len(values)} values" if isinstance(values, (list, tuple)) else type(values).__name__
        raise RewardInputError(
            f"reward {reward!r}: column {key!r} must hold one value per completion ({count}), got {shape}"
        )
    return list(values)


def sample_error(reward: str, index: int, key: str, problem: str) -> RewardInputError:
    """The error for one unusable entry: names the reward, the sample index and the column."""
    return RewardInputError(f"reward {reward!r}: sample {index}, column {key!r}: {problem}")


def bad_entry(reward: str, key: str, index: int, expected: str, value: Any) -> RewardInputError:
    """:func:`sample_error` for a value of the wrong kind (shown truncated)."""
    shown = repr(value)
    shown = shown if len(shown) <= 120 else shown[:117] + "..."
    return sample_error(reward, index, key, f"expected {expected}, got {shown}")


def not_applicable(value: Any) -> bool:
    """``None`` or NaN: a reward's "does not apply to this sample"."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def text_of(reward: str, index: int, completion: Any) -> str:
    """The text of completion ``index`` (a string or chat messages); a wrong type names the sample."""
    try:
        return completion_text(completion)
    except TypeError as err:
        raise RewardInputError(f"reward {reward!r}: sample {index}: {err}") from err
