"""The estimator registry: every advantage estimator is ``fn(batch, **params) -> AdvantageResult``."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable
from typing import Literal, get_args, get_type_hints

from torch import Tensor

from polyreward.batch import RewardBatch

Level = Literal["sample", "turn", "step"]


@dataclasses.dataclass(frozen=True)
class AdvantageResult:
    """What every estimator returns.

    advantages: the final advantages: ``[N]`` per sample, ``[N, T]`` per turn (``level="turn"``) or
        ``[T, E]`` per environment step (``level="step"``). Padding entries are 0.
    per_component: ``[..., K]`` additive share of each reward in ``advantages`` (so that
        ``per_component.sum(-1) == advantages``), for methods that are linear in the rewards; else None.
    channels: named advantage channels that a loss keeps apart (HDPO: ``primary`` and ``conditional``);
        single-channel methods have one channel, ``"advantage"``.
    channel_weights: the loss weight of each channel; ``advantages == sum_c w_c * channels[c]``.
    metrics: scalar diagnostics of the estimator itself (e.g. ``zero_variance_groups``).
    mask: ``[N, T]`` (turn) or None, which entries of ``advantages`` are real.
    extras: other tensors the method produces (e.g. ``returns[T, E, K]`` for value targets).
    """

    advantages: Tensor
    per_component: Tensor | None = None
    channels: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    channel_weights: dict[str, float] = dataclasses.field(default_factory=dict)
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    level: Level = "sample"
    mask: Tensor | None = None
    extras: dict[str, Tensor] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.channels:
            object.__setattr__(self, "channels", {"advantage": self.advantages})
            object.__setattr__(self, "channel_weights", {"advantage": 1.0})


Estimator = Callable[..., AdvantageResult]
_REGISTRY: dict[str, Estimator] = {}


def register(name: str) -> Callable[[Estimator], Estimator]:
    """Register ``fn(batch, *, param=default, ...) -> AdvantageResult`` under ``name``.

    Parameters must be keyword-only with defaults, so that ``compute`` can check them by name.
    """

    def decorate(fn: Estimator) -> Estimator:
        if name in _REGISTRY:
            raise ValueError(f"advantage estimator {name!r} is already registered ({_REGISTRY[name].__module__})")
        params = list(inspect.signature(fn).parameters.values())
        bad = [p.name for p in params[1:] if p.kind is not p.KEYWORD_ONLY]
        if bad:
            raise TypeError(f"estimator {name!r}: parameters {bad} must be keyword-only (after *)")
        _REGISTRY[name] = fn
        return fn

    return decorate


def names() -> list[str]:
    """Names of every registered estimator, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> Estimator:
    """The registered function for ``name``; an unknown name is an error listing close matches."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {close}?" if close else ""
        raise KeyError(f"unknown advantage estimator {name!r}{hint} Registered: {names()}")
    return _REGISTRY[name]


def parameters(name: str) -> dict[str, inspect.Parameter]:
    """The keyword parameters of estimator ``name`` with their defaults."""
    return dict(list(inspect.signature(get(name)).parameters.items())[1:])


def compute(name: str, batch: RewardBatch, **params: object) -> AdvantageResult:
    """Compute advantages with the estimator registered as ``name``.

    >>> result = compute("gdpo", batch)            # doctest: +SKIP
    >>> result.advantages, result.per_component     # doctest: +SKIP

    Unknown parameters and values outside a ``Literal`` choice are errors naming the allowed ones.
    """
    fn = get(name)
    if not isinstance(batch, RewardBatch):
        raise TypeError(f"compute({name!r}): expected a RewardBatch, got {type(batch).__name__}")
    allowed = parameters(name)
    hints = get_type_hints(fn)
    for key, value in params.items():
        if key not in allowed:
            raise TypeError(f"estimator {name!r} has no parameter {key!r}; allowed: {sorted(allowed)}")
        choices = _literal_choices(hints.get(key))
        if choices is not None and value not in choices:
            raise ValueError(f"estimator {name!r}: {key}={value!r} is not one of {list(choices)}")
    return fn(batch, **params)


def _literal_choices(hint: object) -> tuple[object, ...] | None:
    """The allowed values of a ``Literal[...]`` hint (also inside ``X | None``), else None."""
    if hint is None:
        return None
    if getattr(hint, "__origin__", None) is Literal:
        return get_args(hint)
    args = get_args(hint)
    literal = [a for a in args if getattr(a, "__origin__", None) is Literal]
    if literal:
        return tuple(v for a in literal for v in get_args(a)) + ((None,) if type(None) in args else ())
    return None
