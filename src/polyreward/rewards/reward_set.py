"""RewardSet: run K reward components over a batch of completions and return a RewardBatch.

Async components run concurrently in one event loop; components with ``executor="process"`` are
split over a process pool (4 chunks of samples per worker) and those with ``executor="ray"`` over
a pool of Ray actors (:mod:`polyreward.rewards.ray_backend`) while the others run; inline ones
run in this process. Each component's output is checked and its failure policy applied (see
:mod:`polyreward.rewards.component`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import math
import multiprocessing
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from polyreward.batch import RewardBatch
from polyreward.rewards.component import RewardComponent, RewardFailure, RewardFn, parse_output

if TYPE_CHECKING:
    from polyreward.rewards.ray_backend import RayRewardPool


@dataclasses.dataclass(frozen=True)
class ScoredRewards:
    """What :meth:`RewardSet.score` returns.

    batch: the ``[N, K]`` rewards with names, group ids and the weights at this step.
    metrics: ``reward/<name>/mean``, ``/std``, ``/applicable``, ``/abstained``, ``/fallback`` and
        ``/weight`` for every reward, and its wall time as ``time/reward/<name>_s``.
    failures: every failure that a policy handled (empty when all went well).
    """

    batch: RewardBatch
    metrics: dict[str, float]
    failures: list[RewardFailure]


@dataclasses.dataclass
class _Outcome:
    """A raw call result: the values, or the exception, or a timeout."""

    values: Any = None
    error: BaseException | None = None
    timed_out: bool = False
    seconds: float = 0.0


class RewardSet:
    """K named reward components, scored together.

    ``RewardSet([correctness, format_reward, RewardComponent(length, weight=0.5)])``: plain
    functions become components with their ``__name__`` and default settings.
    ``workers``: size of the process pool for ``executor="process"`` components (started lazily,
    reused across calls; close it with :meth:`close` or a ``with`` block).
    ``ray_actors``: the number of Ray actors for ``executor="ray"`` components, or a
    :class:`~polyreward.rewards.ray_backend.RayRewardPool` (actor resources, ``ray.init`` options;
    it may serve several sets, and the caller closes it).
    """

    def __init__(
        self,
        components: Sequence[RewardComponent | RewardFn],
        *,
        workers: int = 2,
        ray_actors: int | RayRewardPool = 2,
    ):
        self.components = [c if isinstance(c, RewardComponent) else RewardComponent(c) for c in components]
        if not self.components:
            raise ValueError("RewardSet: needs at least one reward component")
        names = [c.name for c in self.components]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"RewardSet: reward names must be unique, repeated: {duplicates} "
                "(give RewardComponent(fn, name=...) to tell them apart)"
            )
        if workers < 1:
            raise ValueError(f"RewardSet: workers must be >= 1, got {workers}")
        self.workers = workers
        self._pool: Any = None
        self._ray: RayRewardPool | None = None
        self._owns_ray = False
        ray_components = [c for c in self.components if c.executor == "ray"]
        if ray_components:
            from polyreward.rewards.ray_backend import RayRewardPool

            self._owns_ray = not isinstance(ray_actors, RayRewardPool)
            self._ray = RayRewardPool(ray_actors) if self._owns_ray else ray_actors
            self._ray.attach(ray_components)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.components]

    def weights(self, step: int = 0) -> list[float]:
        """Each reward's weight at training ``step``."""
        return [c.weight_at(step) for c in self.components]

    def score(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        *,
        group_ids: Sequence[int] | None = None,
        group_size: int | None = None,
        step: int = 0,
        **columns: Any,
    ) -> ScoredRewards:
        """Score N completions with every reward.

        ``columns``: extra dataset columns, passed to every reward function as keyword
        arguments. A list or tuple column must hold one value per completion; anything else
        (e.g. a config object) is passed unchanged. ``step`` (the training step) is passed too,
        as ``step=`` unless a column of that name overrides it, for rewards whose rule changes over
        training. ``group_ids`` or ``group_size`` give the prompt of each completion
        (``group_size=G``: consecutive blocks of G).
        """
        _check_columns(prompts, completions, columns)
        call = _Call(list(prompts), list(completions), {"step": step, **columns})
        process = [c for c in self.components if c.executor == "process"]
        remote = [c for c in self.components if c.executor == "ray"]
        asynchronous = [c for c in self.components if c.is_async]
        inline = [c for c in self.components if c.executor == "inline" and not c.is_async]
        pending = {c.name: self._submit(c, call) for c in process}
        on_ray = self._ray.submit(remote, call) if self._ray is not None and remote else {}
        outcomes = dict(zip([c.name for c in asynchronous], _run_async(asynchronous, call), strict=True))
        outcomes.update({c.name: _run_inline(c, call) for c in inline})
        outcomes.update({c.name: self._collect(c, pending[c.name], call) for c in process})
        outcomes.update({name: future.result() for name, future in on_ray.items()})

        columns_out, failures, metrics = [], [], {}
        for component in self.components:
            retry = functools.partial(self._ray.retry, component, call) if component.executor == "ray" else None
            values, failed = _resolve(component, outcomes[component.name], call, retry)
            columns_out.append(values)
            failures += failed
            metrics.update(_reward_metrics(component, values, failed, outcomes[component.name].seconds, step))
        batch = RewardBatch.from_reward_lists(
            columns_out, self.names, group_ids=group_ids, group_size=group_size, weights=self.weights(step)
        )
        return ScoredRewards(batch=batch, metrics=metrics, failures=failures)

    # ------------------------------------------------------------------ process pool
    def _submit(self, component: RewardComponent, call: _Call) -> _Submitted:
        """Send the samples in chunks (4 per worker); returns ``(start time, pool, [(indices, async result)])``."""
        if self._pool is None:
            self._pool = multiprocessing.get_context("forkserver").Pool(self.workers)
        # several chunks per worker balance uneven per-sample cost (the pool hands them out as workers free up)
        chunks = [idx for idx in _split(len(call.completions), 4 * self.workers) if idx]
        jobs = [(idx, self._pool.apply_async(_call_chunk, (component.fn, *call.subset(idx)))) for idx in chunks]
        return time.perf_counter(), self._pool, jobs

    def _collect(self, component: RewardComponent, submitted: _Submitted, call: _Call) -> _Outcome:
        """Gather the chunks; a timeout kills the pool (workers stuck in the function die with it)."""
        start, pool, jobs = submitted
        if pool is not self._pool and not all(job.ready() for _, job in jobs):
            # another reward's timeout killed the pool that held these chunks: their results would
            # never arrive (a wait without timeout would block forever), so send them again
            start, pool, jobs = self._submit(component, call)
        chunks = []
        for idx, job in jobs:
            remaining = None if component.timeout_s is None else component.timeout_s - (time.perf_counter() - start)
            try:
                chunks.append((idx, job.get(timeout=None if remaining is None else max(remaining, 0.0))))
            except multiprocessing.TimeoutError:
                self._kill_pool()
                return _Outcome(timed_out=True, seconds=time.perf_counter() - start)
            except Exception as err:  # the reward function's own exception, re-raised by the pool
                return _Outcome(error=err, seconds=time.perf_counter() - start)
        return _merge_chunks(chunks, start)

    def _kill_pool(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def close(self) -> None:
        """Stop the process pool and the Ray actors that this set started (if any)."""
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None
        if self._ray is not None and self._owns_ray:  # a pool given by the caller may serve other sets
            self._ray.close()

    def __enter__(self) -> RewardSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        parts = [
            f"{c.name}(w={c.weight if not callable(c.weight) else type(c.weight).__name__}, {c.on_error})"
            for c in self.components
        ]
        return f"RewardSet([{', '.join(parts)}])"


_Submitted = tuple[float, Any, list[tuple[list[int], Any]]]  # (start time, pool, [(indices, async result)])


@dataclasses.dataclass
class _Call:
    """The arguments of one scoring call, sliceable by sample."""

    prompts: list[Any]
    completions: list[Any]
    columns: dict[str, Any]

    def subset(self, idx: Sequence[int]) -> tuple[list[Any], list[Any], dict[str, Any]]:
        n = len(self.completions)
        columns = {k: [v[i] for i in idx] if _is_column(v, n) else v for k, v in self.columns.items()}
        return [self.prompts[i] for i in idx], [self.completions[i] for i in idx], columns


def _is_column(value: Any, n: int) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == n


def _check_columns(prompts: Sequence[Any], completions: Sequence[Any], columns: dict[str, Any]) -> None:
    n = len(completions)
    if len(prompts) != n:
        raise ValueError(f"RewardSet.score: {len(prompts)} prompts for {n} completions (repeat each prompt per completion)")
    for key, value in columns.items():
        if isinstance(value, (list, tuple)) and len(value) != n:
            raise ValueError(f"RewardSet.score: column {key!r} has {len(value)} values for {n} completions")


def _split(n: int, parts: int) -> list[list[int]]:
    """Contiguous, near-equal chunks of ``range(n)``."""
    bounds = [round(n * p / parts) for p in range(parts + 1)]
    return [list(range(bounds[p], bounds[p + 1])) for p in range(parts)]


class RewardExit(RuntimeError):
    """A reward function called ``sys.exit()`` (or ``exit()``): a failure of that reward, not a request
    to stop the trainer (or to end a pool worker, whose chunk would then never come back)."""


def _no_exit(fn: RewardFn, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except SystemExit as exc:
        raise RewardExit(f"the reward called sys.exit({exc.code!r})") from None


def _call_chunk(fn: RewardFn, prompts: list[Any], completions: list[Any], columns: dict[str, Any]) -> Any:
    """Runs in a pool worker: the reward on one chunk, as a plain list if it is array-like."""
    values = _no_exit(fn, prompts, completions, **columns)
    return values.tolist() if hasattr(values, "tolist") else list(values) if isinstance(values, tuple) else values


def _merge_chunks(chunks: Sequence[tuple[list[int], Any]], start: float) -> _Outcome:
    """Put chunk outputs back in sample order; a chunk that is not a list of its length is an error.

    (Its values are checked later, with the whole batch, by :meth:`RewardComponent.resolve`.)
    """
    values: list[Any] = [None] * sum(len(idx) for idx, _ in chunks)
    for idx, chunk in chunks:
        if not isinstance(chunk, list) or len(chunk) != len(idx):
            shape = f"{len(chunk)} values" if isinstance(chunk, list) else type(chunk).__name__
            cause = ValueError(f"returned {shape} for a chunk of {len(idx)} completions")
            return _Outcome(error=cause, seconds=time.perf_counter() - start)
        for i, value in zip(idx, chunk, strict=True):
            values[i] = value
    return _Outcome(values=values, seconds=time.perf_counter() - start)


def _call_sync(fn: RewardFn, call: _Call, idx: Sequence[int] | None = None) -> Any:
    """Call a sync or async reward on all samples (or the ``idx`` subset) and return its output."""
    args = call.subset(idx) if idx is not None else (call.prompts, call.completions, call.columns)
    result = _no_exit(fn, args[0], args[1], **args[2])
    return _no_exit(_run_coroutine, result) if asyncio.iscoroutine(result) else result


def _run_coroutine(coroutine: Any) -> Any:
    """``asyncio.run`` that also works when this thread already runs an event loop (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _run_inline(component: RewardComponent, call: _Call) -> _Outcome:
    """A sync reward in this process; with a timeout it runs in a daemon thread we stop waiting for."""
    start = time.perf_counter()
    if component.timeout_s is None:
        try:
            return _Outcome(values=_call_sync(component.fn, call), seconds=time.perf_counter() - start)
        except Exception as err:
            return _Outcome(error=err, seconds=time.perf_counter() - start)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["values"] = _call_sync(component.fn, call)
        except Exception as err:
            box["error"] = err

    thread = threading.Thread(target=target, name=f"reward-{component.name}", daemon=True)
    thread.start()
    thread.join(component.timeout_s)
    seconds = time.perf_counter() - start
    if thread.is_alive():
        return _Outcome(timed_out=True, seconds=seconds)
    return _Outcome(values=box.get("values"), error=box.get("error"), seconds=seconds)


def _run_async(components: list[RewardComponent], call: _Call) -> list[_Outcome]:
    """All async rewards concurrently, each with its own timeout."""
    if not components:
        return []

    async def one(component: RewardComponent) -> _Outcome:
        start = time.perf_counter()
        try:
            values = await asyncio.wait_for(
                component.fn(call.prompts, call.completions, **call.columns), component.timeout_s
            )
        except TimeoutError:
            return _Outcome(timed_out=True, seconds=time.perf_counter() - start)
        except SystemExit as exc:
            error = RewardExit(f"the reward called sys.exit({exc.code!r})")
            return _Outcome(error=error, seconds=time.perf_counter() - start)
        except Exception as err:
            return _Outcome(error=err, seconds=time.perf_counter() - start)
        return _Outcome(values=values, seconds=time.perf_counter() - start)

    async def everything() -> list[_Outcome]:
        return list(await asyncio.gather(*(one(c) for c in components)))

    return _run_coroutine(everything())


Retry = Callable[[Sequence[int]], list[_Outcome]]


def _resolve(
    component: RewardComponent, outcome: _Outcome, call: _Call, retry: Retry | None = None
) -> tuple[list[float], list[RewardFailure]]:
    """Turn an outcome into values under the component's policy.

    A batch call that raised is retried sample by sample (``retry(indices)``, default: in this
    process), so the error names the failing sample and the other samples keep their rewards. A
    timeout fails the whole batch (no retry).
    """
    n = len(call.completions)
    if outcome.timed_out:
        failure = RewardFailure(component.name, None, _cause(component, outcome))
        return component.apply_policy([math.nan] * n, [failure])
    if outcome.error is None:
        return component.resolve(outcome.values, n)
    singles = (retry or functools.partial(_retry_inline, component, call))(range(n))
    values, failures = [math.nan] * n, []
    for i, single in enumerate(singles):
        if single.error is None and not single.timed_out:
            values[i], failed = _parse_one(component, single.values, i)
        else:
            failed = [RewardFailure(component.name, i, _cause(component, single))]
        failures += failed
    if not failures:  # fails on the batch but on no single sample
        failures = [RewardFailure(component.name, None, _cause(component, outcome))]
    return component.apply_policy(values, failures)


def _retry_inline(component: RewardComponent, call: _Call, indices: Sequence[int]) -> list[_Outcome]:
    """Call the reward on each sample alone, in this process."""
    singles = []
    for i in indices:
        try:
            singles.append(_Outcome(values=_call_sync(component.fn, call, [i])))
        except Exception as err:
            singles.append(_Outcome(error=err))
    return singles


def _cause(component: RewardComponent, outcome: _Outcome) -> str:
    if outcome.timed_out:
        return f"timed out after {component.timeout_s:g} s"
    return f"{type(outcome.error).__name__}: {outcome.error}"


def _parse_one(component: RewardComponent, output: Any, index: int) -> tuple[float, list[RewardFailure]]:
    values, failures = parse_output(component.name, output, 1)
    return values[0], [dataclasses.replace(f, sample=index) for f in failures]


def _reward_metrics(
    component: RewardComponent, values: list[float], failures: list[RewardFailure], seconds: float, step: int
) -> dict[str, float]:
    prefix = f"reward/{component.name}"
    applicable = [v for v in values if not math.isnan(v)]
    failed = len(values) if any(f.sample is None for f in failures) else len({f.sample for f in failures})
    mean = sum(applicable) / len(applicable) if applicable else math.nan
    var = sum((v - mean) ** 2 for v in applicable) / (len(applicable) - 1) if len(applicable) > 1 else math.nan
    return {
        f"{prefix}/mean": mean,
        f"{prefix}/std": math.sqrt(var) if var == var else math.nan,
        f"{prefix}/applicable": len(applicable) / len(values) if values else math.nan,
        f"{prefix}/abstained": float(failed if component.on_error == "abstain" else 0),
        f"{prefix}/fallback": float(failed if component.on_error == "fallback" else 0),
        f"time/reward/{component.name}_s": seconds,
        f"{prefix}/weight": component.weight_at(step),
    }
