"""Reward fault injection: every fault x every failure policy x every executor.

Each case scores six completions with two rewards, a healthy one and a faulty one (see
:mod:`tests.reliability.faults`), and checks that the fault is handled as the policy says:
``raise`` stops with an error naming the reward and the sample (or "the whole batch");
``abstain`` gives NaN for the failing samples and counts them in ``reward/<name>/abstained``;
``fallback`` gives the fallback value and counts them in ``reward/<name>/fallback``. A healthy
sample is never below 1, so a 0 anywhere is a silent 0. The healthy reward is never affected.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import sys

import pytest
import torch

from polyreward.rewards import RewardComponent, RewardError, RewardSet
from tests.reliability import faults

COMPLETIONS = ["a", "bb", faults.BAD, "dddd", "e", "ff"]
PROMPTS = ["p0", "p0", "p1", "p1", "p2", "p2"]
BAD_INDEX = COMPLETIONS.index(faults.BAD)
EVERY = frozenset(range(len(COMPLETIONS)))
FALLBACK = -1.0
HANG_TIMEOUT_S, SLOW_TIMEOUT_S = 0.5, 5.0

# fault -> (reward function, samples that must fail, timeout_s)
FAULTS = {
    "exception": (faults.exception, {BAD_INDEX}, None),
    "sys_exit": (faults.calls_exit, {BAD_INDEX}, None),  # neither stops the trainer nor kills a pool worker
    "nan": (faults.nan, {BAD_INDEX}, None),
    "inf": (faults.inf, {BAD_INDEX}, None),
    "wrong_length": (faults.wrong_length, EVERY, None),
    "wrong_type_str": (faults.wrong_type_str, EVERY, None),
    "wrong_type_item": (faults.wrong_type_item, {BAD_INDEX}, None),
    "returns_none": (faults.returns_none, EVERY, None),
    "none_items_are_not_applicable": (faults.not_applicable, set(), None),
    "hang": (faults.hang, EVERY, HANG_TIMEOUT_S),
    "slow_within_timeout": (faults.slow, set(), SLOW_TIMEOUT_S),
}
POLICIES = ("raise", "abstain", "fallback")


@pytest.fixture(scope="module", autouse=True)
def _fast_process_pools():
    """Fork pool workers from a server that has polyreward imported (a pool then starts in ~30 ms,
    not ~1 s; the hang cases kill their pool). No effect when the forkserver already runs."""
    multiprocessing.set_forkserver_preload(["polyreward.rewards.reward_set", "tests.reliability.faults"])


@pytest.fixture(scope="module")
def ray_pool():
    """One local Ray instance and one pool of 2 actors for the ray cases (~5 s to start)."""
    ray = pytest.importorskip("ray")
    from polyreward.rewards import RayRewardPool

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    ray.cloudpickle.register_pickle_by_value(sys.modules[faults.__name__])
    with RayRewardPool(2, actor_options={"num_cpus": 0.5}) as pool:
        yield pool
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[faults.__name__])
    if started:
        ray.shutdown()


def _reward_set(fault: str, policy: str, executor: str, request) -> RewardSet:
    fn, _, timeout_s = FAULTS[fault]
    faulty = RewardComponent(
        fn,
        name=fault,
        on_error=policy,
        fallback=FALLBACK if policy == "fallback" else None,
        timeout_s=timeout_s,
        executor=executor,
    )
    # the faulty reward goes first: its chunks queue ahead of the healthy reward's (a timeout that
    # kills the process pool must not take the healthy reward's chunks with it). On Ray the healthy
    # reward runs inline: see test_a_ray_timeout_does_not_fail_another_ray_reward.
    healthy = RewardComponent(faults.good, name="healthy", executor="inline" if executor == "ray" else executor)
    pool = request.getfixturevalue("ray_pool") if executor == "ray" else 2
    return RewardSet([faulty, healthy], ray_actors=pool)


def _expected(fault: str, policy: str) -> list[float]:
    _, failing, _ = FAULTS[fault]
    values = faults.truth(COMPLETIONS)
    if fault == "none_items_are_not_applicable":
        values[BAD_INDEX] = math.nan
    for i in failing:
        values[i] = math.nan if policy == "abstain" else FALLBACK
    return values


# Ray: every fault but the hang, whose actor kill and restart cost ~4 s a case here; the Ray timeout
# (kill, whole-batch failure, recovery) is tested in tests/integrations/test_ray.py.
CASES = [
    pytest.param(fault, policy, executor, id=f"{fault}-{policy}-{executor}")
    for fault in FAULTS
    for policy in POLICIES
    for executor in ("inline", "process", "ray")
    if not (executor == "ray" and fault == "hang")
]


@pytest.mark.parametrize(("fault", "policy", "executor"), CASES)
def test_fault_is_handled_by_its_policy(fault, policy, executor, request):
    _, failing, _ = FAULTS[fault]
    with _reward_set(fault, policy, executor, request) as rewards:
        if policy == "raise" and failing:
            with pytest.raises(RewardError) as caught:
                rewards.score(PROMPTS, COMPLETIONS, group_size=2)
            where = f"sample {BAD_INDEX}" if failing != EVERY else "(the whole batch|sample 0)"
            assert caught.match(rf"^reward '{fault}' failed on {where}: ")
            assert {f.reward for f in caught.value.failures} == {fault}
            assert {f.sample for f in caught.value.failures} <= (failing | {None})
            return
        scored = rewards.score(PROMPTS, COMPLETIONS, group_size=2)
    column = scored.batch[fault].tolist()
    torch.testing.assert_close(torch.tensor(column), torch.tensor(_expected(fault, policy)), equal_nan=True)
    assert 0.0 not in column, f"silent 0 in {column}"
    assert scored.batch["healthy"].tolist() == faults.truth(COMPLETIONS)
    counted = {
        "abstain": scored.metrics[f"reward/{fault}/abstained"],
        "fallback": scored.metrics[f"reward/{fault}/fallback"],
    }
    assert counted == {p: float(len(failing)) if p == policy else 0.0 for p in counted}
    assert {f.reward for f in scored.failures} == ({fault} if failing else set())
    assert all(f.sample in failing or f.sample is None for f in scored.failures)
    applicable = [v for v in column if not math.isnan(v)]
    mean = scored.metrics[f"reward/{fault}/mean"]
    assert (math.isnan(mean) and not applicable) or mean == pytest.approx(sum(applicable) / len(applicable))


def test_a_process_timeout_does_not_hang_or_fail_another_process_reward():
    """Regression: the hang's timeout killed the shared pool with the healthy reward's chunks queued
    behind the hanging ones; the healthy reward (no timeout) then waited forever."""
    hang = RewardComponent(faults.hang, on_error="abstain", timeout_s=HANG_TIMEOUT_S, executor="process")
    with RewardSet([hang, RewardComponent(faults.good, executor="process")]) as rewards:
        scored = rewards.score(PROMPTS, COMPLETIONS)
    assert scored.batch["good"].tolist() == faults.truth(COMPLETIONS)
    assert scored.metrics["reward/hang/abstained"] == len(COMPLETIONS) and len(scored.failures) == 1


def test_a_ray_timeout_does_not_fail_another_ray_reward(ray_pool):
    """A timeout kills the actor together with other rewards' chunks on it; those chunks run again."""
    hang = RewardComponent(faults.hang, on_error="abstain", timeout_s=HANG_TIMEOUT_S, executor="ray")
    with RewardSet([hang, RewardComponent(faults.good, executor="ray")], ray_actors=ray_pool) as rewards:
        scored = rewards.score(PROMPTS, COMPLETIONS)
    assert scored.batch["good"].tolist() == faults.truth(COMPLETIONS)


def every_odd_sample_is_nan(prompts, completions, **kwargs):
    return [math.nan if i % 2 else 1.0 for i in range(len(completions))]


def _tiny_trainer(model_dir, run_dir, faulty: RewardComponent, steps: int):
    from polyreward.lm.model import load_policy
    from polyreward.lm.trainer import Trainer
    from tests.e2e.tiny_lm import ROWS, says_yes, tiny_config

    config = tiny_config(run_dir, model_dir, steps=steps, save_every=0, samples_to_log=8)
    model, tokenizer = load_policy(config.model)
    return Trainer(model, tokenizer, RewardSet([says_yes, faulty]), ROWS, config)


def test_trainer_records_abstentions_never_a_zero(tiny_model, tmp_path):
    faulty = RewardComponent(every_odd_sample_is_nan, name="flaky", on_error="abstain")
    run = _tiny_trainer(tiny_model, tmp_path / "run", faulty, steps=2).train(progress=False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1]
    for record in records:  # 2 prompts x 4 completions per step, the 4 odd ones abstain
        assert record["reward/flaky/abstained"] == 4.0 and record["reward/flaky/applicable"] == 0.5
        assert record["reward/flaky/mean"] == 1.0 and record["reward/flaky/fallback"] == 0.0
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 16
    for i, sample in enumerate(samples):
        assert sample["rewards"]["flaky"] == (None if i % 2 else 1.0), (i, sample)


def test_trainer_stops_on_a_raising_reward_before_logging_the_step(tiny_model, tmp_path):
    faulty = RewardComponent(every_odd_sample_is_nan, name="flaky", on_error="raise")
    trainer = _tiny_trainer(tiny_model, tmp_path / "run", faulty, steps=2)
    with pytest.raises(RewardError, match=r"^reward 'flaky' failed on sample 1: returned nan"):
        trainer.train(progress=False)
    metrics = tmp_path / "run" / "metrics.jsonl"
    assert not metrics.exists() or metrics.read_text() == ""
