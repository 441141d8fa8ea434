"""Length rewards: DAPO's soft overlong punishment, a linear target-length penalty, a word budget, HBPO.

**How length is measured.** ``unit="tokens"``: ``len(completion_ids[i])`` when the trainer passes
``completion_ids`` (TRL does; the count includes the EOS token when one was generated), else the
``tokenizer``'s count of the completion text (``tokenizer.encode(text, add_special_tokens=False)``,
or any callable ``text -> int | list``). ``"chars"``: characters of the completion text.
``"words"``: whitespace-separated words. ``"auto"`` (the default) is ``"tokens"`` when
``completion_ids`` or a tokenizer is available and ``"chars"`` otherwise (``"words"`` for
:func:`word_budget_reward`). Budgets and limits are in the same unit: a token budget checked in
characters is about 4x too strict for English text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Literal

from polyreward.rewards._columns import column, not_applicable, sample_error
from polyreward.rewards.budget import hbpo_reward
from polyreward.rewards.text import Completion, completion_text

LengthUnit = Literal["auto", "tokens", "chars", "words"]
UNITS = ("auto", "tokens", "chars", "words")


# ---------------------------------------------------------------------------------------------- pure scores
def overlong_penalty(length: float, max_length: int = 20480, cache_length: int = 4096) -> float:
    """DAPO's soft overlong punishment (arXiv 2503.14476, eq. 13).

    ``0`` for ``length <= max_length - cache_length``; ``((max_length - cache_length) - length) / cache_length``,
    linear from 0 to -1, up to ``max_length``; ``-1`` beyond. DAPO uses ``max_length = 20480`` tokens and
    a ``cache_length = 4096`` punishment interval.
    """
    start = max_length - cache_length
    if length <= start:
        return 0.0
    if length <= max_length:
        return (start - length) / cache_length
    return -1.0


def target_length_penalty(length: float, target: float, alpha: float = 3e-4, one_sided: bool = False) -> float:
    """Linear length penalty ``-alpha * |length - target|`` (L1 / LCPO, arXiv 2503.04697, ``alpha = 0.0003``).

    ``one_sided``: only lengths above ``target`` are penalized (a maximum, not an exact target).
    L1 adds this to a 0/1 correctness reward; here it is its own component.
    """
    gap = length - target
    return -alpha * (max(gap, 0.0) if one_sided else abs(gap))


def word_budget_score(n_words: float, budget: float, decay: float | None = None) -> float:
    """``1`` within the budget, then linear down to ``0`` at ``budget + decay`` (default ``decay = budget``)."""
    decay = budget if decay is None else decay
    if n_words <= budget:
        return 1.0
    return max(0.0, 1.0 - (n_words - budget) / decay) if decay > 0 else 0.0


# ---------------------------------------------------------------------------------------------- lengths
def _count_tokens(tokenizer: Any, text: str) -> int:
    if hasattr(tokenizer, "encode"):
        return len(tokenizer.encode(text, add_special_tokens=False))
    count = tokenizer(text)
    return count if isinstance(count, int) else len(count)


def completion_lengths(
    completions: Sequence[Completion],
    unit: LengthUnit = "auto",
    *,
    tokenizer: Any = None,
    completion_ids: Sequence[Sequence[int]] | None = None,
    auto_unit: Literal["chars", "words"] = "chars",
) -> tuple[list[int], str]:
    """``(lengths[N], unit used)`` for a batch, in the unit rules of this module's docstring."""
    if unit not in UNITS:
        raise ValueError(f"completion_lengths: unit={unit!r} is not one of {list(UNITS)}")
    if unit == "auto":
        unit = "tokens" if completion_ids is not None or tokenizer is not None else auto_unit
    if unit == "tokens":
        if completion_ids is not None:
            if len(completion_ids) != len(completions):
                raise ValueError(f"completion_ids has {len(completion_ids)} rows for {len(completions)} completions")
            return [len(ids) for ids in completion_ids], unit
        if tokenizer is None:
            raise ValueError("unit='tokens' needs completion_ids (passed by the trainer) or a tokenizer")
        return [_count_tokens(tokenizer, completion_text(c)) for c in completions], unit
    texts = [completion_text(c) for c in completions]
    return ([len(t) for t in texts] if unit == "chars" else [len(t.split()) for t in texts]), unit


def _values(reward: str, fixed: float | None, name: str | None, columns: dict[str, Any], n: int) -> Sequence[Any]:
    """A per-sample parameter: the fixed value for everyone, or a dataset column."""
    return [fixed] * n if name is None else column(reward, columns, name, n)


def _number(reward: str, index: int, name: str, value: Any, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (positive and not value > 0):
        raise sample_error(reward, index, name, f"expected a {'positive ' if positive else ''}number, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------------- rewards
@dataclasses.dataclass(frozen=True)
class LengthReward:
    """Batched length reward (one of the factories below); picklable, runs on a process pool."""

    kind: Literal["overlong", "target", "word_budget"]
    unit: LengthUnit
    tokenizer: Any
    params: tuple[tuple[str, Any], ...]
    name: str

    @property
    def __name__(self) -> str:
        return self.name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Completion], **columns: Any) -> list[float | None]:
        p = dict(self.params)
        auto = "words" if self.kind == "word_budget" else "chars"
        lengths, _ = completion_lengths(
            completions, self.unit, tokenizer=self.tokenizer, completion_ids=columns.get("completion_ids"), auto_unit=auto
        )
        if self.kind == "overlong":
            return [overlong_penalty(n, p["max_length"], p["cache_length"]) for n in lengths]
        targets = _values(self.name, p["value"], p["column"], columns, len(completions))
        out: list[float | None] = []
        for i, (n, target) in enumerate(zip(lengths, targets, strict=True)):
            if target is None:
                out.append(None)
                continue
            target = _number(self.name, i, p["column"] or "target", target)
            if self.kind == "target":
                out.append(target_length_penalty(n, target, p["alpha"], p["one_sided"]))
            else:
                out.append(word_budget_score(n, target, p["decay"]))
        return out


def overlong_reward(
    max_length: int = 20480,
    cache_length: int = 4096,
    *,
    unit: LengthUnit = "auto",
    tokenizer: Any = None,
    name: str = "overlong",
) -> LengthReward:
    """DAPO's soft overlong punishment per completion (:func:`overlong_penalty`), in [-1, 0]."""
    if not 0 < cache_length <= max_length:
        raise ValueError(f"overlong_reward: need 0 < cache_length <= max_length, got {cache_length}, {max_length}")
    _check_unit("overlong_reward", unit)
    return LengthReward("overlong", unit, tokenizer, (("max_length", max_length), ("cache_length", cache_length)), name)


def target_length_reward(
    target: float | None = None,
    *,
    column: str | None = None,
    alpha: float = 3e-4,
    one_sided: bool = False,
    unit: LengthUnit = "auto",
    tokenizer: Any = None,
    name: str = "length_target",
) -> LengthReward:
    """``-alpha * |length - target|`` (:func:`target_length_penalty`); the target is fixed or a column.

    Give exactly one of ``target`` (same for every sample) or ``column`` (per sample, e.g. L1's
    requested length; ``None`` there gives ``None``).
    """
    _one_of("target_length_reward", "target", target, column)
    if alpha < 0:
        raise ValueError(f"target_length_reward: alpha must be >= 0, got {alpha}")
    _check_unit("target_length_reward", unit)
    params = (("value", target), ("column", column), ("alpha", alpha), ("one_sided", one_sided))
    return LengthReward("target", unit, tokenizer, params, name)


def word_budget_reward(
    budget: float | None = None,
    *,
    column: str | None = None,
    decay: float | None = None,
    unit: LengthUnit = "auto",
    tokenizer: Any = None,
    name: str = "word_budget",
) -> LengthReward:
    """1 within a word budget, linear to 0 at ``budget + decay`` (:func:`word_budget_score`).

    Give exactly one of ``budget`` or ``column``. ``unit="auto"`` counts words here.
    """
    _one_of("word_budget_reward", "budget", budget, column)
    if decay is not None and decay < 0:
        raise ValueError(f"word_budget_reward: decay must be >= 0, got {decay}")
    _check_unit("word_budget_reward", unit)
    params = (("value", budget), ("column", column), ("decay", decay))
    return LengthReward("word_budget", unit, tokenizer, params, name)


@dataclasses.dataclass(frozen=True)
class HBPOLengthReward:
    """Batched HBPO reward ``R(n | b)`` (:func:`~polyreward.rewards.budget.hbpo_reward`); see :func:`hbpo_length_reward`."""

    correctness: Callable[..., Sequence[float | None]]
    budget_column: str
    threshold: float
    max_length: int
    beta: float
    alpha: float
    unit: LengthUnit
    tokenizer: Any
    name: str

    @property
    def __name__(self) -> str:
        return self.name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Completion], **columns: Any) -> list[float | None]:
        n = len(completions)
        budgets = column(self.name, columns, self.budget_column, n)
        correct = list(self.correctness(prompts, completions, **columns))
        if len(correct) != n:
            raise ValueError(f"reward {self.name!r}: the correctness reward returned {len(correct)} values for {n}")
        lengths, _ = completion_lengths(
            completions, self.unit, tokenizer=self.tokenizer, completion_ids=columns.get("completion_ids")
        )
        keep = [i for i in range(n) if budgets[i] is not None and not not_applicable(correct[i])]
        values = (
            hbpo_reward(
                [lengths[i] for i in keep],
                [_number(self.name, i, self.budget_column, budgets[i]) for i in keep],
                [correct[i] >= self.threshold for i in keep],
                max_length=self.max_length,
                beta=self.beta,
                alpha=self.alpha,
            ).tolist()
            if keep
            else []
        )
        out: list[float | None] = [None] * n
        for i, value in zip(keep, values, strict=True):
            out[i] = float(value)
        return out


def hbpo_length_reward(
    correctness: Callable[..., Sequence[float | None]],
    *,
    budget_column: str = "budget",
    threshold: float = 1.0,
    max_length: int = 4096,
    beta: float = 4.0,
    alpha: float = 1 / 4096,
    unit: LengthUnit = "auto",
    tokenizer: Any = None,
    name: str = "hbpo",
) -> HBPOLengthReward:
    """HBPO's budget-aware reward as a batched component (Hierarchical Budget Policy Optimization, arXiv 2507.15844).

    correctness: a batched reward (e.g. ``answer_reward("math")``) whose value ``>= threshold``
        means correct; it is called with the same arguments. ``None`` from it gives ``None``.
    budget_column: the per-sample token budget ``b`` (HBPO: 512, 1024, 2048, 2560 per subgroup).
    Lengths are in tokens when ``completion_ids`` or a ``tokenizer`` is available; otherwise in
    characters, which only makes sense with character budgets.
    """
    if not callable(correctness):
        kind = type(correctness).__name__
        raise TypeError(f"hbpo_length_reward: correctness must be a batched reward function, got {kind}")
    _check_unit("hbpo_length_reward", unit)
    return HBPOLengthReward(correctness, budget_column, threshold, max_length, beta, alpha, unit, tokenizer, name)


def _check_unit(factory: str, unit: str) -> None:
    if unit not in UNITS:
        raise ValueError(f"{factory}: unit={unit!r} is not one of {list(UNITS)}")


def _one_of(factory: str, what: str, fixed: Any, name: str | None) -> None:
    if (fixed is None) == (name is None):
        raise ValueError(f"{factory}: give exactly one of {what}=<number> or column=<name>")
    if fixed is not None and (isinstance(fixed, bool) or not isinstance(fixed, (int, float)) or not fixed > 0):
        raise ValueError(f"{factory}: {what} must be a positive number, got {fixed!r}")
