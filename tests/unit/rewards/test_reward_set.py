import asyncio
import math
import os
import time

import pytest

from polyreward.rewards import RewardComponent, RewardError, RewardSet
from polyreward.rewards.schedules import Linear

from . import reward_fns

PROMPTS = ["p0", "p0", "p1", "p1"]
COMPLETIONS = ["a", "bb", "x", "dddd"]


def correct(prompts, completions, answer, **kwargs):
    return [1.0 if c == a else 0.0 for c, a in zip(completions, answer, strict=True)]


def has_reference(prompts, completions, reference, **kwargs):
    return [None if r is None else 1.0 for r in reference]


def test_trl_style_functions_become_named_columns_with_dataset_columns():
    rs = RewardSet([correct, has_reference, RewardComponent(reward_fns.length_reward, weight=0.5)])
    scored = rs.score(PROMPTS, COMPLETIONS, group_size=2, answer=["a", "a", "c", "dddd"], reference=[None, "r", "r", "r"])
    batch = scored.batch
    assert batch.names == ("correct", "has_reference", "length_reward")
    assert batch["correct"].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert math.isnan(batch["has_reference"][0]) and batch["has_reference"][1:].tolist() == [1.0, 1.0, 1.0]
    assert batch["length_reward"].tolist() == [1.0, 2.0, 1.0, 4.0]
    assert batch.weights.tolist() == [1.0, 1.0, 0.5] and batch.group_index.tolist() == [0, 0, 1, 1]
    assert scored.metrics["reward/correct/mean"] == 0.5
    assert scored.metrics["reward/has_reference/applicable"] == 0.75
    assert scored.failures == []


def broken(prompts, completions, **kwargs):
    return [1.0 / (len(c) - 1) for c in completions]  # ZeroDivisionError on one-letter completions


def test_raise_policy_names_reward_sample_and_cause():
    with pytest.raises(RewardError, match=r"reward 'broken' failed on sample 0: ZeroDivisionError.*and 1 more"):
        RewardSet([broken]).score(PROMPTS, COMPLETIONS)


def test_abstain_policy_gives_nan_only_on_failing_samples_and_counts_them():
    scored = RewardSet([RewardComponent(broken, on_error="abstain")]).score(PROMPTS, COMPLETIONS)
    values = scored.batch["broken"].tolist()
    assert math.isnan(values[0]) and math.isnan(values[2])
    assert values[1] == 1.0 and values[3] == pytest.approx(1 / 3)
    assert scored.metrics["reward/broken/abstained"] == 2.0
    assert [f.sample for f in scored.failures] == [0, 2]


def test_fallback_policy_uses_the_stated_value():
    scored = RewardSet([RewardComponent(broken, on_error="fallback", fallback=-1.0)]).score(PROMPTS, COMPLETIONS)
    assert scored.batch["broken"].tolist()[0] == -1.0 and scored.metrics["reward/broken/fallback"] == 2.0


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ([1.0, 2.0], "returned 2 values for 4 completions"),
        ("1234", "returned str, expected a list of 4 floats"),
        ([1.0, float("nan"), 0.0, 0.0], "failed on sample 1: returned nan"),
        ([1.0, 0.0, float("inf"), 0.0], "failed on sample 2: returned inf"),
        ([1.0, 0.0, 0.0, "yes"], "failed on sample 3: returned 'yes' \\(str\\)"),
    ],
)
def test_bad_outputs_are_detected(output, message):
    def bad(prompts, completions, **kwargs):
        return output

    with pytest.raises(RewardError, match=message):
        RewardSet([bad]).score(PROMPTS, COMPLETIONS)
    abstained = RewardSet([RewardComponent(bad, on_error="abstain")]).score(PROMPTS, COMPLETIONS)
    assert abstained.metrics["reward/bad/abstained"] >= 1  # never silently 0


def test_numpy_and_tensor_outputs_are_accepted():
    import numpy as np
    import torch

    def as_numpy(prompts, completions, **kwargs):
        return np.ones(len(completions))

    def as_tensor(prompts, completions, **kwargs):
        return torch.arange(len(completions), dtype=torch.float32)

    batch = RewardSet([as_numpy, as_tensor]).score(PROMPTS, COMPLETIONS).batch
    assert batch["as_tensor"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_async_rewards_run_concurrently():
    async def slow_a(prompts, completions, **kwargs):
        await asyncio.sleep(0.4)
        return [1.0] * len(completions)

    async def slow_b(prompts, completions, **kwargs):
        await asyncio.sleep(0.4)
        return [2.0] * len(completions)

    start = time.perf_counter()
    batch = RewardSet([slow_a, slow_b]).score(PROMPTS, COMPLETIONS).batch
    assert time.perf_counter() - start < 0.7  # concurrent: ~0.4 s, not 0.8 s
    assert batch["slow_b"].tolist() == [2.0] * 4


def test_async_timeout_and_sync_timeout_fail_the_batch_by_policy():
    async def hangs(prompts, completions, **kwargs):
        await asyncio.sleep(10)

    def blocks(prompts, completions, **kwargs):
        time.sleep(10)

    rs = RewardSet(
        [
            RewardComponent(hangs, timeout_s=0.2, on_error="abstain"),
            RewardComponent(blocks, timeout_s=0.2, on_error="fallback", fallback=0.5),
        ]
    )
    start = time.perf_counter()
    scored = rs.score(PROMPTS, COMPLETIONS)
    assert time.perf_counter() - start < 1.5
    assert all(math.isnan(v) for v in scored.batch["hangs"].tolist())
    assert scored.batch["blocks"].tolist() == [0.5] * 4
    assert "timed out after 0.2 s" in str(scored.failures[0])
    with pytest.raises(RewardError, match="reward 'blocks' failed on the whole batch: timed out"):
        RewardSet([RewardComponent(blocks, timeout_s=0.1)]).score(PROMPTS, COMPLETIONS)


def test_process_executor_splits_the_batch_over_workers():
    with RewardSet(
        [
            RewardComponent(reward_fns.slow_worker_pid, executor="process"),
            RewardComponent(reward_fns.length_reward, executor="process"),
        ],
        workers=2,
    ) as rs:
        batch = rs.score(PROMPTS, COMPLETIONS).batch
        pids = set(batch["slow_worker_pid"].tolist())
        assert len(pids) == 2 and os.getpid() not in pids
        assert batch["length_reward"].tolist() == [1.0, 2.0, 1.0, 4.0]


def test_process_executor_failure_names_the_sample_and_timeout_kills_workers():
    with RewardSet([RewardComponent(reward_fns.fails_on_x, executor="process", on_error="abstain")]) as rs:
        scored = rs.score(PROMPTS, COMPLETIONS)
        assert [f.sample for f in scored.failures] == [2]
        assert scored.batch["fails_on_x"].tolist()[3] == 1.0
    with RewardSet([RewardComponent(reward_fns.sleepy, executor="process", timeout_s=1.0, on_error="abstain")]) as rs:
        start = time.perf_counter()
        scored = rs.score(PROMPTS, COMPLETIONS)
        assert time.perf_counter() - start < 10
        assert scored.metrics["reward/sleepy/abstained"] == 4.0
        again = rs.score(PROMPTS, COMPLETIONS)  # a fresh pool after the kill
        assert again.metrics["reward/sleepy/abstained"] == 4.0


def test_weight_schedules_are_evaluated_at_the_step():
    rs = RewardSet([RewardComponent(correct, weight=Linear(start=0.0, end=1.0, steps=10))])
    at = {step: rs.score(PROMPTS, COMPLETIONS, step=step, answer=COMPLETIONS).batch.weights.item() for step in (0, 5, 20)}
    assert at == {0: 0.0, 5: 0.5, 20: 1.0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fn": correct, "on_error": "ignore"}, "on_error='ignore' is not one of"),
        ({"fn": correct, "on_error": "fallback"}, "give fallback=<value> exactly when"),
        ({"fn": correct, "fallback": 0.0}, "give fallback=<value> exactly when"),
        ({"fn": correct, "timeout_s": 0}, "timeout_s must be > 0"),
        ({"fn": lambda p, c, **k: [], "name": ""}, "give a name"),
        ({"fn": lambda p, c, **k: [], "name": "x", "executor": "process"}, "needs a picklable, module-level function"),
        ({"fn": 3}, "fn must be callable"),
    ],
)
def test_component_configuration_errors(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        RewardComponent(**kwargs)


def test_set_level_errors():
    with pytest.raises(ValueError, match=r"repeated: \['correct'\]"):
        RewardSet([correct, correct])
    with pytest.raises(ValueError, match="column 'answer' has 1 values for 4 completions"):
        RewardSet([correct]).score(PROMPTS, COMPLETIONS, answer=["a"])
    with pytest.raises(ValueError, match="3 prompts for 4 completions"):
        RewardSet([correct]).score(PROMPTS[:3], COMPLETIONS, answer=COMPLETIONS)
