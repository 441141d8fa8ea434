"""Shared plumbing for the built-in batched rewards: dataset columns, errors, picklable named functions.

Batched rewards follow TRL: ``fn(prompts, completions, **columns) -> list[float | None]``, with each
dataset column arriving as a keyword list aligned with ``completions``. The factories in this
package return ``functools.partial`` objects over module-level functions, so they pickle (for
``RewardComponent(executor="process")``) and carry a ``__name__`` (the reward's name).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from polyreward.rewards.text import completion_text

RewardFn = Callable[..., list[float | None]]  # fn(prompts, completions, **columns)


class RewardInputError(ValueError):
    """A reward got input it cannot score (missing column, wrong reference type): a bug, not a low score."""


def named(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``fn`` with ``__name__ = name`` (works on ``functools.partial``, which keeps it when pickled)."""
    if not name or not isinstance(name, str):
        raise ValueError(f"a reward needs a non-empty string name, got {name!r}")
    fn.__name__ = name  # type: ignore[attr-defined]
    return fn


def bind(impl: Callable[..., Any], config: Any, name: str) -> Callable[..., Any]:
    """``named(partial(impl, config), name)``; ``impl(config, prompts, completions, **columns)``."""
    return named(functools.partial(impl, config), name)


def column(reward: str, columns: Mapping[str, Any], key: str, count: int) -> list[Any]:
    """Dataset column ``key`` as a list of ``count`` entries, or an error naming the reward and column."""
    if key not in columns:
        known = sorted(k for k in columns if k not in ("prompts", "completions"))
        raise RewardInputError(f"reward {reward!r}: dataset column {key!r} is missing (columns given: {known})")
    values = columns[key]
    if isinstance(values, (str, bytes)) or (not isinstance(values, Sequence) and not hasattr(values, "__len__")):
        raise RewardInputError(f"reward {reward!r}: column {key!r} must be a list aligned with completions, "
                               f"got {type(values).__name__}")
    values = list(values)
    if len(values) != count:
        raise RewardInputError(f"reward {reward!r}: column {key!r} has {len(values)} entries for {count} completions")
    return values


def bad_entry(reward: str, key: str, index: int, expected: str, value: Any) -> RewardInputError:
    """The error for one unusable column entry: names the reward, sample index and column."""
    shown = repr(value)
    shown = shown if len(shown) <= 120 else shown[:117] + "..."
    return RewardInputError(f"reward {reward!r}: sample {index}, column {key!r}: expected {expected}, got {shown}")


def text_of(reward: str, index: int, completion: Any) -> str:
    """The text of completion ``index`` (a string or chat messages); a wrong type names the sample."""
    try:
        return completion_text(completion)
    except TypeError as err:
        raise RewardInputError(f"reward {reward!r}: sample {index}: {err}") from err
