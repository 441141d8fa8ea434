"""ExIt task buffer: priorities by hand, eviction order, depth cap, prompts, mixing, config errors."""

import math
import random

import pytest
import torch

from polyreward.batch import RewardBatch
from polyreward.lm.controllers import StepPlan, build_controllers
from polyreward.lm.data import PromptSource
from polyreward.lm.exit_buffer import (
    ExIt,
    buffer_probabilities,
    evict,
    improvement,
    improvement_reward,
    self_iteration_prompt,
    self_iteration_row,
)
from polyreward.rewards import RewardSet


def correct(prompts, completions, **kw):
    return [0.0] * len(completions)


CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"}]
ROWS = [{"prompt": f"q{i}", "answer": str(i)} for i in range(6)]


def _controller(**params) -> ExIt:
    c = ExIt(reward="correct", **params)
    c.bind(RewardSet([correct]), PromptSource(ROWS, seed=0), seed=0)
    return c


def _batch(values: list[list[float]]) -> RewardBatch:
    g = len(values[0])
    flat = [[v] for row in values for v in row]
    return RewardBatch(rewards=flat, names=["correct"], group_ids=[i // g for i in range(len(flat))])


def _entry(i: int, score: float, depth: int = 1) -> dict:
    return {"id": i, "index": 0, "depth": depth, "previous": f"a{i}", "previous_return": 0.0, "score": score, "born": 0}


# ---------------------------------------------------------------------------------------------- pure parts
def test_priorities_by_hand():
    # variances 0.25, 0.75 -> 0.25 / 1.0, 0.75 / 1.0; std: 0.5 / (0.5 + 0.866)
    assert buffer_probabilities([0.25, 0.75]) == pytest.approx([0.25, 0.75])
    assert buffer_probabilities([0.25, 0.75], "std") == pytest.approx([0.5 / (0.5 + math.sqrt(0.75)), 0.6339746], abs=1e-6)
    assert buffer_probabilities([0.25, 0.75], "uniform") == [0.5, 0.5]
    assert buffer_probabilities([0.0, 0.0]) == [0.5, 0.5]
    assert buffer_probabilities([]) == []


def test_eviction_drops_lowest_priority_then_oldest():
    entries = [_entry(0, 0.2), _entry(1, 0.1), _entry(2, 0.3), _entry(3, 0.1), _entry(4, 0.2)]
    kept, evicted = evict(entries, 3)
    assert [e["id"] for e in evicted] == [1, 3]  # both 0.1, oldest first
    assert [e["id"] for e in kept] == [0, 2, 4]  # input order kept
    kept, evicted = evict(entries, 2)
    assert [e["id"] for e in evicted] == [1, 3, 0] and [e["id"] for e in kept] == [2, 4]
    assert evict(entries, 5) == (entries, [])


def test_prompt_for_string_and_chat():
    text = self_iteration_prompt("What is 2 + 3?", "<answer>6</answer>", "Improve it.")
    assert text == "Improve it.\n\n## Request:\nWhat is 2 + 3?\n\n## Current response:\n<answer>6</answer>"
    chat = self_iteration_prompt(CHAT, "<answer>6</answer>", "Improve it.")
    assert chat == [
        *CHAT,
        {"role": "assistant", "content": "<answer>6</answer>"},
        {"role": "user", "content": "Improve it."},
    ]
    assert len(CHAT) == 2  # the base prompt is not modified


def test_rows_keep_the_answer_and_mark_depth():
    base = {"prompt": CHAT, "answer": "5", "task": "add"}
    row = self_iteration_row(base, "prompt", "<answer>6</answer>", 2, 0.0)
    assert row["answer"] == "5" and row["task"] == "add"
    assert row["exit_depth"] == 2 and row["previous_attempt"] == "<answer>6</answer>" and row["previous_return"] == 0.0
    assert row["prompt"][-1]["role"] == "user" and len(row["prompt"]) == 4
    zero = self_iteration_row(base, "prompt", None, 0)
    assert zero["prompt"] is CHAT and zero["exit_depth"] == 0 and zero["previous_attempt"] is None


def test_improvement_by_hand():
    assert improvement(1.0, 0.5) == 1.0
    assert improvement(0.75, 0.5) == 0.5
    assert improvement(0.2, 0.5) == 0.0
    assert improvement(1.0, 1.0) == 0.0

    def score(prompts, completions, **kw):
        return [float(c == "right") for c in completions]

    wrapped = improvement_reward(score)
    assert wrapped.__name__ == "score_improvement"
    assert wrapped(["p"] * 3, ["right", "right", "wrong"], previous_return=[None, 0.0, 0.0]) == [1.0, 1.0, 0.0]


# ---------------------------------------------------------------------------------------------- controller
def test_observe_adds_instances_with_the_group_variance():
    c = _controller(max_depth=2)
    plan = StepPlan(0, 3)
    c.plan(0, plan, probe=None)
    assert all(r["exit_depth"] == 0 for r in plan.rows)
    texts = [f"t{p}{k}" for p in range(3) for k in range(4)]
    metrics = c.observe(0, _batch([[1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0]]), plan.indices, plan.rows, texts)
    # unbiased variances: 0.25, 0 (flat: no instance), 1/3
    assert [e["score"] for e in c.buffer] == pytest.approx([0.25, 1 / 3])
    assert [e["index"] for e in c.buffer] == [plan.indices[0], plan.indices[2]]
    assert all(e["depth"] == 1 for e in c.buffer)
    assert c.buffer[0]["previous"].startswith("t0") and c.buffer[1]["previous"].startswith("t2")
    assert metrics["exit/added"] == 2.0 and metrics["exit/buffer_size"] == 2.0


def test_depth_cap_and_rescoring_of_replayed_instances():
    c = _controller(max_depth=1, mix=1.0)
    c.buffer, c.next_id = [_entry(0, 0.5, depth=1)], 1
    plan = StepPlan(0, 2)
    c.plan(1, plan, probe=None)
    assert [r["exit_depth"] for r in plan.rows] == [1, 0]
    assert plan.rows[0]["prompt"] == self_iteration_prompt("q0", "a0")
    assert plan.indices[0] == 0
    texts = [f"t{i}" for i in range(8)]
    c.observe(1, _batch([[1, 0, 1, 0], [1, 0, 0, 0]]), plan.indices, plan.rows, texts)
    # the depth-1 instance was rescored (1/3) but made no depth-2 child; the base row made one
    assert [(e["id"], e["depth"]) for e in c.buffer] == [(0, 1), (1, 1)]
    assert c.buffer[0]["score"] == pytest.approx(1 / 3)


def test_replayed_flat_instances_leave_the_buffer():
    c = _controller(mix=1.0)
    c.buffer, c.next_id = [_entry(0, 0.5)], 1
    plan = StepPlan(0, 1)
    c.plan(0, plan, probe=None)
    metrics = c.observe(0, _batch([[1, 1, 1, 1]]), plan.indices, plan.rows, ["x"] * 4)
    assert c.buffer == [] and metrics["exit/dropped_flat"] == 1.0


def test_buffer_size_is_kept():
    c = _controller(buffer_size=2, mix=0.0)
    plan = StepPlan(0, 3)
    c.plan(0, plan, probe=None)
    metrics = c.observe(0, _batch([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0]]), plan.indices, plan.rows, ["x"] * 12)
    assert len(c.buffer) == 2 and metrics["exit/evicted"] == 1.0
    assert sorted(e["score"] for e in c.buffer) == pytest.approx([1 / 3, 1 / 3])


def test_mixing_probability_with_a_seeded_count():
    c = _controller(mix=0.3, buffer_size=1000)
    c.buffer = [_entry(i, 1.0) for i in range(1000)]
    picks = c.draw(random.Random(123), 1000)
    count = sum(p is not None for p in picks)
    assert count == 308  # seeded; Binomial(1000, 0.3) has mean 300, sd 14.5
    assert len({p["id"] for p in picks if p is not None}) == count  # no entry twice in a step
    assert all(p is None for p in _controller(mix=0.0).draw(random.Random(0), 50))


def test_draw_follows_priority():
    c = _controller(mix=1.0)
    c.buffer = [_entry(0, 0.9), _entry(1, 0.1)]
    firsts = [c.draw(random.Random(s), 1)[0]["id"] for s in range(2000)]
    assert firsts.count(0) / 2000 == pytest.approx(0.9, abs=0.03)


def test_state_dict_round_trip():
    c = _controller()
    c.buffer, c.next_id = [_entry(0, 0.5), _entry(1, 0.25)], 2
    other = _controller()
    other.load_state_dict(c.state_dict())
    assert other.buffer == c.buffer and other.next_id == 2
    p1, p2 = StepPlan(4, 3), StepPlan(4, 3)
    c.plan(7, p1, probe=None)
    other.plan(7, p2, probe=None)
    assert p1.rows == p2.rows and p1.indices == p2.indices


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"buffer_size": 0}, "buffer_size"),
        ({"mix": 1.5}, "mix"),
        ({"priority": "rank"}, "priority"),
        ({"min_variance": -0.1}, "min_variance"),
        ({"max_depth": 0}, "max_depth"),
        ({"instruction": " "}, "instruction"),
        ({"reward": ""}, "reward"),
    ],
)
def test_config_errors_name_the_field(params, field):
    with pytest.raises(ValueError, match=rf"controllers\[0\] \(exit\): {field}:"):
        build_controllers([{"kind": "exit", "params": params}])


def test_unknown_reward_is_named_at_bind():
    c = ExIt(reward="nope")
    with pytest.raises(ValueError, match="exit.reward: no reward named 'nope'"):
        c.bind(RewardSet([correct]), PromptSource(ROWS, seed=0), seed=0)


def test_weighted_sum_return_when_no_reward_is_named():
    c = ExIt()
    c.bind(RewardSet([correct]), PromptSource(ROWS, seed=0), seed=0)
    assert torch.equal(c.returns(_batch([[1, 0], [0, 0]])), torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
