"""``check_reward(fn, samples)``: tell a user what is wrong with their reward function."""

from __future__ import annotations

import dataclasses
import inspect
import math
import pickle
import time
from collections.abc import Mapping, Sequence
from typing import Any

from polyreward.rewards.component import RewardFn, is_async_reward, parse_output
from polyreward.rewards.reward_set import _Call, _call_sync


@dataclasses.dataclass
class RewardCheck:
    """Problems must be fixed before training; notes are worth knowing."""

    name: str
    values: list[float]
    problems: list[str]
    notes: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = f"reward {self.name!r}: " + ("OK" if self.ok else f"{len(self.problems)} problem(s)")
        lines = [head, *(f"  problem: {p}" for p in self.problems), *(f"  note: {n}" for n in self.notes)]
        return "\n".join(lines)


def check_reward(fn: RewardFn, samples: Sequence[Mapping[str, Any]]) -> RewardCheck:
    """Call ``fn`` the way a :class:`RewardSet` (and TRL) would, on ``samples``, and report.

    ``samples``: dicts with ``"prompt"``, ``"completion"`` and any dataset columns, e.g.
    ``[{"prompt": "2+3?", "completion": "<answer>5</answer>", "answer": "5"}]``. Checks the
    signature, the output (length, types, NaN/inf), batch-vs-single consistency, determinism,
    whether the reward ever applies or varies, and whether it can run on a process pool.
    """
    name = getattr(fn, "__name__", None) or type(fn).__name__
    if not callable(fn):
        return RewardCheck(name, [], [f"not callable ({type(fn).__name__})"], [])
    problems, notes = _signature_problems(fn, samples), []
    if not samples:
        return RewardCheck(name, [], [*problems, "no samples given: pass a few representative ones"], notes)
    call = _as_call(samples)
    start = time.perf_counter()
    try:
        raw = _call_sync(fn, call)
    except Exception as err:
        return RewardCheck(name, [], [*problems, f"raised on the batch: {type(err).__name__}: {err}"], notes)
    per_sample_ms = (time.perf_counter() - start) * 1e3 / len(samples)
    values, failures = parse_output(name, raw, len(samples))
    problems += [str(f) for f in failures]
    if not failures:
        problems += _single_vs_batch(fn, call, values)
        if _values_differ(values, parse_output(name, _call_sync(fn, call), len(samples))[0]):
            notes.append("two calls on the same samples gave different values (sampling? a judge with temperature?)")
    applicable = [v for v in values if not math.isnan(v)]
    if not failures and not applicable:
        problems.append("returned None for every sample: this reward never applies (wrong column name?)")
    elif len(set(applicable)) == 1 and len(applicable) > 1:
        notes.append(f"every applicable sample got {applicable[0]}: no signal to compare within a group")
    notes.append("async: runs concurrently with other async rewards" if is_async_reward(fn) else _process_note(fn))
    notes.append(f"{per_sample_ms:.2f} ms per sample")
    return RewardCheck(name, values, problems, notes)


def _as_call(samples: Sequence[Mapping[str, Any]]) -> _Call:
    keys = [k for k in samples[0] if k not in ("prompt", "completion")]
    for i, sample in enumerate(samples):
        missing = {"prompt", "completion", *keys} - set(sample)
        if missing:
            raise ValueError(f"check_reward: sample {i} lacks {sorted(missing)} (every sample needs the same keys)")
    columns = {k: [s[k] for s in samples] for k in keys}
    return _Call([s["prompt"] for s in samples], [s["completion"] for s in samples], columns)


def _signature_problems(fn: RewardFn, samples: Sequence[Mapping[str, Any]]) -> list[str]:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []
    problems = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 and not any(p.kind is p.VAR_POSITIONAL for p in params):
        problems.append("must take (prompts, completions, **kwargs): it takes fewer than two positional arguments")
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        problems.append("has no **kwargs: trainers pass every dataset column and extras such as completion_ids")
    columns = set(samples[0]) - {"prompt", "completion"} if samples else set()
    required = [p.name for p in params[2:] if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    missing = [r for r in required if r not in columns]
    if missing:
        problems.append(f"requires column(s) {missing} that the samples do not have (columns: {sorted(columns)})")
    return problems


def _single_vs_batch(fn: RewardFn, call: _Call, batch_values: list[float]) -> list[str]:
    problems = []
    for i, batch_value in enumerate(batch_values):
        try:
            alone, failures = parse_output("", _call_sync(fn, call, [i]), 1)
        except Exception as err:
            return [f"raised on sample {i} alone but not in the batch: {type(err).__name__}: {err}"]
        if failures:
            return [f"on sample {i} alone: {failures[0].cause}"]
        if _values_differ([batch_value], alone):
            problems.append(
                f"sample {i} scores {alone[0]} alone but {batch_value} in the batch "
                "(does the function depend on batch order or size?)"
            )
    return problems


def _values_differ(a: list[float], b: list[float]) -> bool:
    return any(not (x == y or (math.isnan(x) and math.isnan(y))) for x, y in zip(a, b, strict=True))


def _process_note(fn: RewardFn) -> str:
    try:
        pickle.dumps(fn)
    except Exception:  # any pickling failure means "not for the process pool"
        return "not picklable: runs inline only (define it at module level for executor='process')"
    return "picklable: can run on the process pool (executor='process')"
