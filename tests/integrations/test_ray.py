"""executor="ray": rewards on a pool of long-lived Ray actors, with the failure policy of every executor.

One local Ray instance (2 CPUs) and one pool of 2 actors serve the whole module: starting Ray and
each actor (which imports polyreward and torch) takes seconds. Tests that kill actors leave the
pool with fresh replacements, which the other tests then use.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from pathlib import Path

import pytest

from polyreward.rewards import (
    LazyReward,
    RayRewardPool,
    RewardComponent,
    RewardError,
    RewardSet,
    answer_reward,
    format_reward,
)

ray = pytest.importorskip("ray")

PROMPTS = ["p0"] * 6
COMPLETIONS = ["a", "bb", "x", "dddd", "eeeee", "ffffff"]


@pytest.fixture(scope="module")
def pool():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    # pytest imports this file as a top-level module the actors cannot import: ship its functions by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with RayRewardPool(2, actor_options={"num_cpus": 0.5}) as shared:  # leaves 1 CPU for a set's own pool
        yield shared
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    if started:
        ray.shutdown()


def on_ray(pool: RayRewardPool, *components: RewardComponent) -> RewardSet:
    return RewardSet(list(components), ray_actors=pool)


def length(prompts, completions, **kwargs):
    return [float(len(c)) for c in completions]


def fails_on_x(prompts, completions, **kwargs):
    return [1 / 0 if c == "x" else float(len(c)) for c in completions]


def nan_on_x(prompts, completions, **kwargs):
    return [math.nan if c == "x" else 1.0 for c in completions]


def hangs_on_x(prompts, completions, **kwargs):
    if "x" in completions:
        time.sleep(60)
    return [1.0 for _ in completions]


def exits_on_x(prompts, completions, **kwargs):
    if "x" in completions:
        os._exit(3)  # the actor's process dies without a Python exception
    return [float(len(c)) for c in completions]


def actor_pid(prompts, completions, **kwargs):
    return [float(os.getpid()) for _ in completions]


def test_values_equal_inline_execution_on_real_rewards(pool):
    texts = [f"<think>t</think><answer>\\frac{{{k}}}{{{k + 1}}}</answer>" for k in range(20)]
    texts += [f"answer: {k}" for k in range(20)]
    refs = [f"{k}/{k + 1}" if k % 3 else "7" for k in range(40)]
    rewards = [answer_reward("math", name="math"), format_reward(name="format")]
    inline = RewardSet(rewards).score(["q"] * 40, texts, answer=refs)
    with on_ray(pool, *(RewardComponent(r, executor="ray") for r in rewards)) as rs:
        remote = rs.score(["q"] * 40, texts, answer=refs)
    assert remote.batch.rewards.tolist() == inline.batch.rewards.tolist()
    assert 0 < remote.batch["math"].sum() < 40 and remote.batch["format"].sum() == 20  # not a constant column
    assert {k: v for k, v in remote.metrics.items() if not k.startswith("time/")} == {
        k: v for k, v in inline.metrics.items() if not k.startswith("time/")
    }
    assert remote.metrics["time/reward/math_s"] > 0


def test_batch_is_split_over_the_actors_not_run_on_the_driver(pool):
    pool.start()  # both actors up (an earlier test may have left one starting)
    with on_ray(pool, RewardComponent(actor_pid, executor="ray")) as rs:
        pids = set(rs.score(["p"] * 16, ["c"] * 16).batch["actor_pid"].tolist())
    assert len(pids) == 2 and os.getpid() not in pids


def test_exception_is_retried_per_sample_and_named_under_every_policy(pool):
    raising = on_ray(pool, RewardComponent(fails_on_x, executor="ray"))
    with pytest.raises(RewardError, match=r"reward 'fails_on_x' failed on sample 2: ZeroDivisionError"):
        raising.score(PROMPTS, COMPLETIONS)
    with on_ray(
        pool,
        RewardComponent(fails_on_x, executor="ray", on_error="abstain"),
        RewardComponent(fails_on_x, name="fb", executor="ray", on_error="fallback", fallback=-1.0),
    ) as rs:
        scored = rs.score(PROMPTS, COMPLETIONS)
    values = scored.batch["fails_on_x"].tolist()
    assert math.isnan(values[2]) and [v for i, v in enumerate(values) if i != 2] == [1.0, 2.0, 4.0, 5.0, 6.0]
    assert scored.batch["fb"].tolist() == [1.0, 2.0, -1.0, 4.0, 5.0, 6.0]
    assert scored.metrics["reward/fails_on_x/abstained"] == 1.0 and scored.metrics["reward/fb/fallback"] == 1.0
    assert [(f.reward, f.sample) for f in scored.failures] == [("fails_on_x", 2), ("fb", 2)]


def test_bad_values_are_detected_by_the_shared_checks(pool):
    rs = on_ray(pool, RewardComponent(nan_on_x, executor="ray"))
    with pytest.raises(RewardError, match=r"reward 'nan_on_x' failed on sample 2: returned nan"):
        rs.score(PROMPTS, COMPLETIONS)


def test_timeout_kills_the_stuck_actor_fails_the_batch_and_the_pool_recovers(pool):
    component = RewardComponent(hangs_on_x, executor="ray", timeout_s=1.0, on_error="abstain")
    with on_ray(pool, component) as rs:
        rs.score(PROMPTS[:2], COMPLETIONS[:2])  # actors up (their start never counts against timeout_s)
        start = time.perf_counter()
        scored = rs.score(PROMPTS, COMPLETIONS)
        assert time.perf_counter() - start < 4.0  # not the 60 s sleep
        assert all(math.isnan(v) for v in scored.batch["hangs_on_x"].tolist())
        assert [str(f) for f in scored.failures] == ["reward 'hangs_on_x' failed on the whole batch: timed out after 1 s"]
        assert len(pool.start()._up_actors()) == 2  # the killed actor was replaced
        again = rs.score(PROMPTS[:2], COMPLETIONS[:2])
        assert again.batch["hangs_on_x"].tolist() == [1.0, 1.0] and again.failures == []


def test_an_actor_that_dies_is_a_failure_naming_reward_and_sample_not_a_hang(pool):
    with on_ray(pool, RewardComponent(exits_on_x, executor="ray", on_error="abstain")) as rs:
        start = time.perf_counter()
        scored = rs.score(PROMPTS, COMPLETIONS)
        assert time.perf_counter() - start < 30.0
        values = scored.batch["exits_on_x"].tolist()
        assert math.isnan(values[2]) and values[:2] == [1.0, 2.0] and values[3:] == [4.0, 5.0, 6.0]
        assert len(scored.failures) == 1 and scored.failures[0].sample == 2
        assert "RewardActorDied: the Ray actor running it died" in str(scored.failures[0])
    raising = on_ray(pool, RewardComponent(exits_on_x, executor="ray"))
    with pytest.raises(RewardError, match=r"reward 'exits_on_x' failed on sample 1: RewardActorDied"):
        raising.score(["p", "p"], ["a", "x"])


def _load_counter(log: str):
    """An 'expensive' reward: loading appends this process's pid to ``log``."""
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    model = {"pid": os.getpid()}

    def score(prompts, completions, **kwargs):
        return [float(model["pid"]) for _ in completions]

    return score


def test_lazy_reward_loads_once_per_actor_and_never_on_the_driver(pool, tmp_path: Path):
    log = tmp_path / "loads.txt"
    judge = LazyReward(functools.partial(_load_counter, str(log)), name="judge")
    pool.start()
    with on_ray(pool, RewardComponent(judge, executor="ray")) as rs:
        used = set()
        for _ in range(3):
            used |= set(rs.score(["p"] * 16, ["c"] * 16).batch["judge"].tolist())
    loads = [int(line) for line in log.read_text().split()]
    assert len(used) == 2 and os.getpid() not in used
    assert sorted(loads) == sorted(int(p) for p in used)  # one load per actor, over 3 batches of 8 chunks


def test_unsupported_rewards_are_rejected_with_a_reason(monkeypatch):
    async def judge(prompts, completions, **kwargs):
        return [1.0 for _ in completions]

    with pytest.raises(ValueError, match="async functions run concurrently inline"):
        RewardComponent(judge, executor="ray")
    import threading

    lock = threading.Lock()

    def holds_lock(prompts, completions, **kwargs):
        with lock:
            return [1.0 for _ in completions]

    with pytest.raises(ValueError, match="reward 'holds_lock': executor='ray' .* does not pickle.*LazyReward"):
        RewardSet([RewardComponent(holds_lock, executor="ray")])
    with pytest.raises(ValueError, match="not one of \\['inline', 'process', 'ray'\\]"):
        RewardComponent(length, executor="dask")
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"executor='ray' needs Ray: pip install 'polyreward\[ray\]'"):
        RewardSet([RewardComponent(length, executor="ray")])


def test_inline_and_ray_rewards_mix_in_a_set_that_owns_its_pool(pool):
    with RewardSet([length, RewardComponent(actor_pid, executor="ray")], ray_actors=1) as rs:
        batch = rs.score(PROMPTS, COMPLETIONS).batch
        own = rs._ray
    assert batch["length"].tolist() == [1.0, 2.0, 1.0, 4.0, 5.0, 6.0]
    assert len(set(batch["actor_pid"].tolist())) == 1 and batch["actor_pid"][0] != os.getpid()
    assert own is not pool and own._handles == [None]  # closing the set killed the actor it started


def test_one_pool_serves_two_sets_with_the_same_reward_name(pool):
    train = on_ray(pool, RewardComponent(length, name="r", executor="ray"))
    evaluation = on_ray(pool, RewardComponent(actor_pid, name="r", executor="ray"))
    assert train.score(PROMPTS, COMPLETIONS).batch["r"].tolist() == [1.0, 2.0, 1.0, 4.0, 5.0, 6.0]
    pids = set(evaluation.score(PROMPTS, COMPLETIONS).batch["r"].tolist())
    assert pids and os.getpid() not in pids and pids.isdisjoint({1.0, 2.0, 4.0, 5.0, 6.0})
    train.close()  # the caller's pool stays up
    assert train.score(PROMPTS[:1], COMPLETIONS[:1]).batch["r"].tolist() == [1.0]
