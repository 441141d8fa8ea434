"""Run rewards on a pool of long-lived Ray actors (``RewardComponent(fn, executor="ray")``).

For expensive rewards (LM judges, reward models, sandboxed code): every actor holds the set's
``executor="ray"`` functions for its whole life, so a model that a reward loads lazily
(:class:`LazyReward`) is loaded once per actor, not once per call. A batch is split into chunks
(4 per actor) that actors take from a queue; the failure policy is the one of every other
executor (see :mod:`polyreward.rewards.reward_set`):

- an exception (or an actor that dies) in a chunk: the batch is retried sample by sample on the
  actors, one sample per actor at a time, so the failure names the sample;
- a chunk still running at ``timeout_s`` after the batch was sent: the actors running it are
  killed (and replaced on next use) and the whole batch fails; in the per-sample retry the limit
  applies to each sample.

See ``docs/integrations/ray.md``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from polyreward.rewards.component import RewardComponent, RewardFn, is_async_reward
from polyreward.rewards.reward_set import _Call, _call_chunk, _merge_chunks, _Outcome, _split

_BUILT: dict[str, RewardFn] = {}  # LazyReward token -> built reward, per process
_BUILT_LOCK = threading.Lock()
_START_TIMEOUT_S = 300.0  # first actors: Ray may still be starting workers, each importing torch


class LazyReward:
    """A reward built by ``factory()`` on its first call, once per process (driver, pool worker or Ray actor).

    ``LazyReward(lambda: judge_reward("/models/judge"), name="judge")``: the factory (not the
    model) is what gets pickled and shipped, so each Ray actor (or process-pool worker) loads the
    model once and keeps it. ``factory() -> fn(prompts, completions, **columns) -> list[float | None]``
    must return a sync function.
    """

    def __init__(self, factory: Callable[[], RewardFn], name: str):
        if not callable(factory):
            raise TypeError(f"LazyReward {name!r}: factory must be callable, got {type(factory).__name__}")
        if not name:
            raise ValueError("LazyReward: give a name")
        self.factory = factory
        self.__name__ = name
        self._token = uuid.uuid4().hex  # survives pickling: the cache key in each process

    def built(self) -> RewardFn:
        """The reward function, built on first use in this process."""
        with _BUILT_LOCK:
            if self._token not in _BUILT:
                fn = self.factory()
                if not callable(fn) or is_async_reward(fn):
                    raise TypeError(f"LazyReward {self.__name__!r}: factory must return a sync reward function, got {fn!r}")
                _BUILT[self._token] = fn
            return _BUILT[self._token]

    def __call__(self, prompts: Any, completions: Any, **columns: Any) -> Any:
        return self.built()(prompts, completions, **columns)

    def __repr__(self) -> str:
        return f"LazyReward({self.__name__!r})"


class RewardActorDied(RuntimeError):
    """The Ray actor running a reward died (the process exited or was killed) before it answered."""


class _RewardActor:
    """A Ray actor holding reward functions by name (wrapped by ``ray.remote`` on first use)."""

    def __init__(self, fns: dict[str, RewardFn]):
        self.fns = dict(fns)

    def ready(self) -> bool:
        return True

    def add(self, fns: dict[str, RewardFn]) -> None:
        self.fns.update(fns)

    def score(self, key: str, prompts: list[Any], completions: list[Any], columns: dict[str, Any]) -> tuple[bool, Any]:
        """``(True, values)``, or ``(False, exception)``: the reward's own exception is a result, not an actor error."""
        try:
            return True, _call_chunk(self.fns[key], prompts, completions, columns)
        except Exception as err:
            return False, err


def require_ray() -> Any:
    """Import ray, or say how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError("executor='ray' needs Ray: pip install 'polyreward[ray]' (ray==2.60.0)") from err
    return ray


def init_ray(num_cpus: int | None = None, **kwargs: Any) -> None:
    """``ray.init`` a local, quiet instance unless Ray is already initialized (e.g. ``ray.init(address=...)``)."""
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING, **kwargs)


class RayRewardPool:
    """``actors`` long-lived Ray actors that run the ``executor="ray"`` components of reward sets.

    actors: number of actors. actor_options: ``ray.remote`` options per actor, e.g.
        ``{"num_cpus": 1, "num_gpus": 0.5}`` (default ``{"num_cpus": 1}``).
    num_cpus: for the local ``ray.init`` when Ray is not initialized yet (default: all cores);
        call ``ray.init(address=...)`` yourself first to use an existing cluster.
    init_kwargs: more ``ray.init`` keyword arguments for that local start.

    Actors start with the first batch (or :meth:`start`) and are reused; a killed or dead actor is
    replaced at once, and takes jobs when it is up. One pool may serve several reward sets (say,
    training and evaluation sharing a judge's actors). :meth:`close` kills the actors (it does not
    shut Ray down); ``RewardSet.close`` does it only for the pool that the set created from
    ``ray_actors=N``.
    """

    def __init__(
        self,
        actors: int = 2,
        *,
        actor_options: dict[str, Any] | None = None,
        num_cpus: int | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ):
        if actors < 1:
            raise ValueError(f"RayRewardPool: actors must be >= 1, got {actors}")
        self.actors = actors
        self.actor_options = {"num_cpus": 1, **(actor_options or {})}
        self.num_cpus = num_cpus
        self.init_kwargs = dict(init_kwargs or {})
        self._fns: dict[str, RewardFn] = {}  # key -> function, over every attached set
        self._keys: dict[int, tuple[RewardComponent, str]] = {}  # id(component) -> (component, key)
        self._handles: list[Any] = [None] * actors
        self._booting: dict[int, Any] = {}  # slot -> ready() ref of an actor still starting
        self._lock = threading.Lock()
        # actors killed because a job on them timed out: other jobs that die with them are run again
        self._killed_on_purpose: dict[int, Any] = {}  # id(handle) -> handle (kept, so the id stays unique)
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None

    def attach(self, components: Sequence[RewardComponent]) -> None:
        """Take a reward set's ``executor="ray"`` components (running actors receive them too)."""
        ray = require_ray()
        for c in components:
            try:
                ray.cloudpickle.dumps(c.fn)
            except Exception as err:  # pickling can fail with many exception types
                raise ValueError(
                    f"reward {c.name!r}: executor='ray' ships the function to the actors, and it does not pickle "
                    f"({type(err).__name__}: {err}); wrap what holds a model or lock in LazyReward"
                ) from err
        fns = {}
        with self._lock:
            for c in components:
                key = f"{len(self._keys)}:{c.name}"  # reward names are unique per set only
                self._keys[id(c)] = (c, key)  # holding c keeps its id unique
                fns[key] = c.fn
            self._fns.update(fns)
            live = [h for h in self._handles if h is not None]
        if live:
            ray.get([h.add.remote(fns) for h in live])

    # ------------------------------------------------------------------ scoring
    def submit(self, components: Sequence[RewardComponent], call: _Call) -> dict[str, concurrent.futures.Future]:
        """Start each component's batch in the background; ``future.result()`` is its ``_Outcome``."""
        self._launch()
        assert self._threads is not None
        return {c.name: self._threads.submit(self._score_batch, c, call) for c in components}

    def _key(self, component: RewardComponent) -> str:
        return self._keys[id(component)][1]

    def retry(self, component: RewardComponent, call: _Call, indices: Sequence[int]) -> list[_Outcome]:
        """Score each sample on its own (one per actor at a time, ``timeout_s`` each): names the failing one."""
        jobs = [[i] for i in indices]
        return self._run(self._key(component), call, jobs, depth=1, job_timeout=component.timeout_s)

    def _score_batch(self, component: RewardComponent, call: _Call) -> _Outcome:
        if not self._up_actors():
            self._wait_any_up()  # an actor's start never counts against timeout_s
        start = time.perf_counter()
        jobs = [idx for idx in _split(len(call.completions), 4 * self.actors) if idx]
        deadline = None if component.timeout_s is None else start + component.timeout_s
        # two chunks in flight per actor hide the round trip; all share the batch's deadline
        results = self._run(self._key(component), call, jobs, depth=2, deadline=deadline)
        seconds = time.perf_counter() - start
        if any(r.timed_out for r in results):
            return _Outcome(timed_out=True, seconds=seconds)
        errors = [r.error for r in results if r.error is not None]
        if errors:
            return _Outcome(error=errors[0], seconds=seconds)
        return _merge_chunks([(idx, r.values) for idx, r in zip(jobs, results, strict=True)], start)

    def _run(
        self,
        key: str,
        call: _Call,
        jobs: list[list[int]],
        *,
        depth: int,
        deadline: float | None = None,
        job_timeout: float | None = None,
    ) -> list[_Outcome]:
        """Run ``jobs`` (sample indices) from a queue, at most ``depth`` in flight per actor.

        A job still running at ``deadline`` (or ``job_timeout`` after it was sent) times out and
        its actor is killed; with ``deadline``, jobs still queued then time out too.
        """
        ray = require_ray()
        results: list[_Outcome | None] = [None] * len(jobs)
        queue = collections.deque(range(len(jobs)))
        inflight: dict[Any, tuple[int, int, Any, float]] = {}  # ref -> (job, slot, actor, sent at)
        load = [0] * self.actors

        def limit(sent: float) -> float | None:
            return deadline if job_timeout is None else sent + job_timeout

        while queue or inflight:
            up = self._up_actors()  # actors still starting (replacements) get jobs once they are up
            if not up and not inflight:
                self._wait_any_up()
                continue
            for _, (slot, actor) in itertools.product(range(depth), up.items()):  # round-robin over actors
                if queue and load[slot] < depth:
                    job = queue.popleft()
                    inflight[actor.score.remote(key, *call.subset(jobs[job]))] = (job, slot, actor, time.perf_counter())
                    load[slot] += 1
            limits = [t for t in (limit(sent) for *_, sent in inflight.values()) if t is not None]
            wait = None if not limits else max(min(limits) - time.perf_counter(), 0.0)
            ray.wait(list(inflight) + self._booting_refs(), num_returns=1, timeout=wait)
            ready, _ = ray.wait(list(inflight), num_returns=len(inflight), timeout=0)  # all that finished
            now = time.perf_counter()
            for ref in ready:
                job, slot, actor, sent = inflight.pop(ref)
                load[slot] -= 1
                outcome = self._outcome(ray, ref, slot, actor, now - sent)
                if outcome is None:  # its actor was killed for another job's timeout: not this job's failure
                    queue.appendleft(job)
                else:
                    results[job] = outcome
            for ref, (job, slot, actor, sent) in list(inflight.items()):
                expiry = limit(sent)
                if expiry is not None and now >= expiry:
                    del inflight[ref]
                    load[slot] -= 1
                    results[job] = _Outcome(timed_out=True, seconds=now - sent)
                    self._kill(slot, actor, on_purpose=True)
            if deadline is not None and now >= deadline:
                while queue:
                    results[queue.popleft()] = _Outcome(timed_out=True)
        return [r if r is not None else _Outcome(timed_out=True) for r in results]

    def _outcome(self, ray: Any, ref: Any, slot: int, actor: Any, seconds: float) -> _Outcome | None:
        """The job's outcome; ``None`` when its actor was killed because another job on it timed out."""
        try:
            ok, payload = ray.get(ref)
        except ray.exceptions.RayActorError as err:
            with self._lock:
                if id(actor) in self._killed_on_purpose:
                    return None
            self._kill(slot, actor)
            detail = str(err).strip().splitlines()[0]
            return _Outcome(error=RewardActorDied(f"the Ray actor running it died ({detail})"), seconds=seconds)
        except ray.exceptions.RayError as err:  # e.g. the output or the exception did not pickle
            return _Outcome(error=err, seconds=seconds)
        return _Outcome(values=payload, seconds=seconds) if ok else _Outcome(error=payload, seconds=seconds)

    # ------------------------------------------------------------------ actors
    def start(self) -> RayRewardPool:
        """Start Ray (if needed) and the actors, and wait until every actor is up (to warm up before training)."""
        self._launch()
        for ref in self._booting_refs():
            self._check_started(ref)
        self._up_actors()
        return self

    def _launch(self) -> None:
        """Start Ray (if needed) and the actors, without waiting: a batch starts once one actor is up."""
        with self._lock:
            if self._threads is not None:
                return
            init_ray(self.num_cpus, **self.init_kwargs)
            for slot in range(self.actors):
                self._spawn(slot)
            # one thread per component in flight; they only wait on Ray
            self._threads = concurrent.futures.ThreadPoolExecutor(32, thread_name_prefix="ray-reward")

    def _spawn(self, slot: int) -> None:
        """Start a fresh actor in ``slot`` (call with the lock held); it takes jobs once its ``ready()`` returns."""
        ray = require_ray()
        actor = ray.remote(_RewardActor).options(**self.actor_options).remote(dict(self._fns))
        self._handles[slot], self._booting[slot] = actor, actor.ready.remote()

    def _up_actors(self) -> dict[int, Any]:
        """``{slot: actor}`` for the actors that are up; an actor that failed to start is an error."""
        ray = require_ray()
        with self._lock:
            handles, booting = list(self._handles), dict(self._booting)
        done = set(ray.wait(list(booting.values()), num_returns=len(booting), timeout=0)[0]) if booting else set()
        for slot, ref in booting.items():
            if ref in done:
                self._check_started(ref)
                with self._lock:
                    if self._booting.get(slot) is ref:
                        del self._booting[slot]
        starting = {slot for slot, ref in booting.items() if ref not in done}
        return {slot: h for slot, h in enumerate(handles) if h is not None and slot not in starting}

    def _booting_refs(self) -> list[Any]:
        with self._lock:
            return list(self._booting.values())

    def _wait_any_up(self) -> None:
        """Block until an actor that is starting is up."""
        ray = require_ray()
        booting = self._booting_refs()
        if booting:
            ready, _ = ray.wait(booting, num_returns=1, timeout=_START_TIMEOUT_S)
            self._check_started(ready[0] if ready else booting[0])

    def _check_started(self, ref: Any) -> None:
        ray = require_ray()
        try:
            ray.get(ref, timeout=_START_TIMEOUT_S)
        except (ray.exceptions.RayError, TimeoutError) as err:  # GetTimeoutError is a TimeoutError
            raise RuntimeError(
                f"RayRewardPool: could not start an actor with {self.actor_options} "
                f"(cluster resources {ray.cluster_resources()}): {type(err).__name__}: {err}"
            ) from err

    def _kill(self, slot: int, actor: Any, on_purpose: bool = False) -> None:
        """Kill ``actor`` (stuck or dead) and start its replacement right away. ``on_purpose``: killed
        for a timeout, so the other jobs it was running are re-queued rather than failed."""
        ray = require_ray()
        with self._lock:
            if on_purpose:
                self._killed_on_purpose[id(actor)] = actor
            if self._handles[slot] is actor:
                self._spawn(slot)
        ray.kill(actor, no_restart=True)

    def close(self) -> None:
        """Kill the actors (Ray itself keeps running)."""
        with self._lock:
            handles, self._handles = self._handles, [None] * self.actors
            threads, self._threads = self._threads, None
            self._booting.clear()
        if threads is not None:
            threads.shutdown(wait=True)
        live = [h for h in handles if h is not None]
        if live:
            ray = require_ray()
            for h in live:
                ray.kill(h, no_restart=True)

    def __enter__(self) -> RayRewardPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
