"""A reward component: a name, a batched reward function, a weight and a failure policy.

Reward functions are TRL-style: ``fn(prompts, completions, **kwargs) -> list[float | None]``,
sync or async, where ``None`` means "not applicable to this sample". Everything a function can
get wrong (an exception, a timeout, a wrong length or type, NaN or inf) is caught here and handled
by the component's policy; nothing is ever silently turned into 0.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
import pickle
from collections.abc import Callable, Sequence
from typing import Any, Literal

from polyreward.rewards.schedules import Schedule, weight_at

RewardFn = Callable[..., Any]
OnError = Literal["raise", "abstain", "fallback"]
Executor = Literal["inline", "process", "ray"]


@dataclasses.dataclass(frozen=True)
class RewardFailure:
    """One failure of one reward: ``sample`` is None when the whole batch failed."""

    reward: str
    sample: int | None
    cause: str

    def __str__(self) -> str:
        where = "the whole batch" if self.sample is None else f"sample {self.sample}"
        return f"reward {self.reward!r} failed on {where}: {self.cause}"


class RewardError(RuntimeError):
    """A reward with ``on_error="raise"`` failed; ``failures`` lists every failing sample."""

    def __init__(self, failures: Sequence[RewardFailure]):
        self.failures = list(failures)
        more = f" (and {len(self.failures) - 1} more samples)" if len(self.failures) > 1 else ""
        super().__init__(f"{self.failures[0]}{more}")


@dataclasses.dataclass(frozen=True)
class RewardComponent:
    """A named reward in a :class:`~polyreward.rewards.RewardSet`.

    fn: ``fn(prompts, completions, **columns) -> list[float | None]``; sync or ``async def``.
    name: the reward's name in the batch and metrics (default: ``fn.__name__``).
    weight: a float, or a schedule ``step -> weight`` (see ``polyreward.rewards.schedules``).
    on_error: ``"raise"`` stops with an error naming the reward, sample and cause; ``"abstain"``
        gives NaN (not applicable) for failing samples; ``"fallback"`` gives ``fallback``. Both
        are counted in the metrics (``reward/<name>/abstained``, ``reward/<name>/fallback``).
    timeout_s: wall-clock limit for one call on the batch (a timeout fails every sample).
    executor: ``"inline"`` runs in this process (a timed-out sync call keeps running in a
        background thread; its result is dropped); ``"process"`` splits the batch over the reward
        set's process pool, for CPU-bound rewards, and kills workers that time out. The function
        must then be importable at module level (picklable). ``"ray"`` splits it over the reward
        set's Ray actors (``RewardSet(..., ray_actors=N)``), long-lived, for expensive rewards;
        the function is shipped with cloudpickle (see ``docs/integrations/ray.md``).
    """

    fn: RewardFn
    name: str = ""
    weight: float | Schedule = 1.0
    on_error: OnError = "raise"
    fallback: float | None = None
    timeout_s: float | None = None
    executor: Executor = "inline"

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"reward component: fn must be callable, got {type(self.fn).__name__}")
        name = self.name or getattr(self.fn, "__name__", "")
        if not name or name == "<lambda>":
            raise ValueError("reward component: give a name (the function has no usable __name__)")
        object.__setattr__(self, "name", name)
        if self.on_error not in ("raise", "abstain", "fallback"):
            raise ValueError(f"reward {name!r}: on_error={self.on_error!r} is not one of ['raise', 'abstain', 'fallback']")
        if (self.on_error == "fallback") != (self.fallback is not None):
            raise ValueError(f"reward {name!r}: give fallback=<value> exactly when on_error='fallback'")
        if self.fallback is not None and not math.isfinite(self.fallback):
            raise ValueError(f"reward {name!r}: fallback must be finite, got {self.fallback}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"reward {name!r}: timeout_s must be > 0, got {self.timeout_s}")
        if self.executor not in ("inline", "process", "ray"):
            raise ValueError(f"reward {name!r}: executor={self.executor!r} is not one of ['inline', 'process', 'ray']")
        if self.executor != "inline" and self.is_async:
            raise ValueError(f"reward {name!r}: async functions run concurrently inline; use executor='inline'")
        if self.executor == "process":
            try:
                pickle.dumps(self.fn)
            except Exception as err:  # pickling can fail with many exception types
                raise ValueError(
                    f"reward {name!r}: executor='process' needs a picklable, module-level function "
                    f"({type(err).__name__}: {err})"
                ) from err
        if not callable(self.weight) and not math.isfinite(float(self.weight)):
            raise ValueError(f"reward {name!r}: weight must be finite, got {self.weight}")

    @property
    def is_async(self) -> bool:
        return is_async_reward(self.fn)

    def weight_at(self, step: int) -> float:
        return weight_at(self.weight, step)

    def resolve(self, values: Any, count: int) -> tuple[list[float], list[RewardFailure]]:
        """Validate a raw output for ``count`` samples and apply the failure policy.

        Returns ``(values, failures)`` with NaN for "not applicable" and for abstentions.
        Raises :class:`RewardError` under ``on_error="raise"``.
        """
        parsed, failures = parse_output(self.name, values, count)
        return self.apply_policy(parsed, failures)

    def apply_policy(self, values: list[float], failures: list[RewardFailure]) -> tuple[list[float], list[RewardFailure]]:
        """Replace failing samples by the policy's value (a batch failure covers every sample)."""
        if not failures:
            return values, failures
        if self.on_error == "raise":
            raise RewardError(failures)
        replacement = math.nan if self.on_error == "abstain" else float(self.fallback)
        failing = range(len(values)) if any(f.sample is None for f in failures) else {f.sample for f in failures}
        values = list(values)
        for i in failing:
            values[i] = replacement
        return values, failures


def is_async_reward(fn: RewardFn) -> bool:
    """True for ``async def`` functions and objects with an ``async def __call__``."""
    call = None if inspect.isfunction(fn) else type(fn).__call__
    return inspect.iscoroutinefunction(fn) or (call is not None and inspect.iscoroutinefunction(call))


def parse_output(name: str, values: Any, count: int) -> tuple[list[float], list[RewardFailure]]:
    """Check a reward function's output: a sequence of ``count`` finite numbers or None.

    Returns floats (None -> NaN) and a failure per bad sample (or one for the whole batch when
    the output is not a sequence of the right length).
    """
    if hasattr(values, "tolist") and not isinstance(values, (str, bytes)):
        values = values.tolist()  # numpy arrays and tensors
    if not isinstance(values, Sequence) or isinstance(values, (str, bytes)):
        cause = f"returned {type(values).__name__}, expected a list of {count} floats (or None)"
        return [math.nan] * count, [RewardFailure(name, None, cause)]
    if len(values) != count:
        cause = f"returned {len(values)} values for {count} completions"
        return [math.nan] * count, [RewardFailure(name, None, cause)]
    parsed, failures = [], []
    for i, value in enumerate(values):
        if value is None:
            parsed.append(math.nan)
        elif isinstance(value, numbers.Real):
            number = float(value)
            if not math.isfinite(number):
                failures.append(RewardFailure(name, i, f"returned {number} (use None for 'not applicable')"))
            parsed.append(number)
        else:
            failures.append(RewardFailure(name, i, f"returned {value!r} ({type(value).__name__}), expected a float or None"))
            parsed.append(math.nan)
    return parsed, failures
