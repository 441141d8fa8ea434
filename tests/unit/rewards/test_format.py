import math
import pickle

import pytest

from polyreward.rewards.format import (
    MetaStep,
    format_reward,
    meta_format_reward,
    meta_reasoning_rewards,
    parallel_format_errors,
    parallel_format_reward,
    parallel_r1_reward,
    parallel_r1_score,
    parse_meta_step,
    tag_format_ok,
)


# ------------------------------------------------------------------ tag grammars
@pytest.mark.parametrize(
    ("text", "loose", "strict"),
    [
        ("<think>a</think><answer>b</answer>", True, True),
        ("\n<think>a</think>\n\n<answer>b</answer>\n", True, True),
        ("Sure! <think>a</think> so <answer>b</answer>", True, False),
        ("<answer>b</answer><think>a</think>", False, False),  # wrong order
        ("<think>a</think><answer>b</answer><answer>c</answer>", False, False),  # twice
        ("<think>a<answer>b</think></answer>", False, False),  # interleaved
        ("<think>a</think>", False, False),  # missing
        ("<think>a<think>b</think><answer>c</answer>", False, False),  # an extra opening tag
    ],
)
def test_tag_grammar(text, loose, strict):
    assert tag_format_ok(text) is loose
    assert tag_format_ok(text, strict=True) is strict


def test_format_reward_is_named_batched_and_configurable():
    reward = format_reward(("reasoning", "final"), strict=True, name="fmt")
    assert reward.__name__ == "fmt"
    completions = ["<reasoning>x</reasoning><final>y</final>", [{"role": "assistant", "content": "<final>y</final>"}]]
    assert reward(["p", "p"], completions, answer=["ignored", "ignored"]) == [1.0, 0.0]
    assert pickle.loads(pickle.dumps(reward)) == reward
    with pytest.raises(ValueError, match="tags must be distinct"):
        format_reward(("a", "a"))
    with pytest.raises(ValueError, match="non-empty tag names"):
        format_reward(("<think>",))


# ------------------------------------------------------------------ Parallel-R1
BLOCK = "<Parallel><Path>try 1</Path><Path>try 2</Path></Parallel><Summary>both give 3</Summary>"


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("plain reasoning, no parallel block", True),
        (f"start {BLOCK} middle {BLOCK} end", True),
        ("<Parallel><Path>a</Path><Path>b</Path><Path>c</Path></Parallel><Summary>s</Summary>", True),
        ("<Path>outside</Path>", True),  # allowed by the released checker
        ("<Parallel><Path>only one</Path></Parallel><Summary>s</Summary>", False),
        ("<Parallel><Path>a</Path><Path>b</Path></Parallel> no summary", False),
        ("<Summary>without a block</Summary>", False),
        (f"{BLOCK}<Summary>second summary</Summary>", False),
        ("<Parallel><Path>a</Path><Path>b</Parallel></Path><Summary>s</Summary>", False),  # bad nesting
        ("<Parallel><Path>a</Path><Path>b</Path>", False),  # unclosed
    ],
)
def test_parallel_format(text, ok):
    assert (parallel_format_errors(text) == []) is ok


def test_parallel_r1_score_spec_cases():
    assert parallel_r1_score(True, True, 2) == pytest.approx(1 + 0.3 + 0.6 * math.log(3))
    assert parallel_r1_score(True, True, 2) == pytest.approx(1.9592, abs=1e-4)
    assert parallel_r1_score(False, True, 1) == pytest.approx(-0.7693, abs=1e-4)
    assert parallel_r1_score(True, False, 3) == pytest.approx(0.7)  # no bonus without a valid format
    assert parallel_r1_score(False, False, 0) == pytest.approx(-1.3)


def test_parallel_r1_batched_reward_reads_correctness_format_and_count():
    reward = parallel_r1_reward()
    completions = [
        f"{BLOCK} {BLOCK} so \\boxed{{3}}",  # correct, format ok, 2 blocks: 1.9592
        f"{BLOCK} so \\boxed{{4}}",  # wrong, format ok, 1 block: -0.7693
        "<Parallel><Path>a</Path></Parallel> \\boxed{3}",  # correct, bad format, 1 block: 1 - 0.3
        "\\boxed{3}",  # correct, format ok (no block), 0 blocks: 1.3
    ]
    out = reward(None, completions, answer=["3"] * 4)
    assert out == pytest.approx([1.9592, -0.7693, 0.7, 1.3], abs=1e-4)
    assert reward(None, ["\\boxed{3}"], answer=[None]) == [None]
    assert parallel_format_reward()(None, completions) == [1.0, 1.0, 0.0, 1.0]


# ------------------------------------------------------------------ RLVMR
@pytest.mark.parametrize(
    ("text", "valid", "tag"),
    [
        ("<planning>go to the desk first</planning><action>go to desk 1</action>", True, "planning"),
        ("<think>t</think><explore>look around</explore> <action>look</action>", True, "explore"),
        ("<monitor>on track</monitor><action>look</action>", True, None),  # valid, but not a rewarded type
        ("<Reflection>oops</Reflection><action>look</action>", True, None),  # case-insensitive check, case-sensitive type
        ("<action>look</action>", False, None),  # no meta-reasoning tag
        ("<action>look</action><planning>late plan</planning>", False, None),  # tag after the action
        ("<planning>a</planning><explore>b</explore><action>look</action>", False, None),  # two tags
        ("<planning>  </planning><action>look</action>", False, None),  # empty tag
        ("<planning>p</planning><action>a</action><action>b</action>", False, None),  # two actions
        ("<planning>计划</planning><action>look</action>", False, None),  # CJK text
    ],
)
def test_meta_step_validity(text, valid, tag):
    step = parse_meta_step(text)
    assert step.valid is valid
    assert step.tag == tag


def test_meta_step_action_availability():
    step = parse_meta_step("<explore>x</explore><action> open drawer 1 </action>", ["open drawer 1", "look"])
    assert step.actions == ("open drawer 1",) and step.available
    assert not parse_meta_step("<explore>x</explore><action>fly</action>", ["look"]).available
    assert parse_meta_step("<explore>x</explore><action>fly</action>").available  # no list given: assumed available


TRAJECTORY = [
    "<planning>find the key</planning><action>go to desk 1</action>",  # planning: pays on success
    "<explore>check the drawer</explore><action>open drawer 1</action>",  # new action: 1
    "<explore>again</explore><action>open drawer 1</action>",  # repeat of step 1: 0
    "<action>take key</action>",  # invalid (no tag): 0, no type
    "<reflection>that failed</reflection><action>take key from drawer 1</action>",  # after failure, changed: 1
    "<reflection>hmm</reflection><action>go to door</action>",  # previous step was fine: 0
    "<monitor>almost done</monitor><action>open door</action>",  # monitor: 0, no type
]


def test_meta_reasoning_rewards_follow_the_released_rules():
    won = meta_reasoning_rewards(TRAJECTORY, success=True)
    assert won.rewards == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert won.tags == ["planning", "explore", "explore", None, "reflection", "reflection", None]
    assert won.valid == [True, True, True, False, True, True, True]
    lost = meta_reasoning_rewards(TRAJECTORY, success=False, planning_reward=0.5, exploration_reward=2.0)
    assert lost.rewards == [0.0, 2.0, 0.0, 0.0, 1.0, 0.0, 0.0]


def test_reflection_after_an_inadmissible_action_and_on_the_first_step():
    steps = ["<explore>x</explore><action>fly</action>", "<reflection>cannot fly</reflection><action>walk</action>"]
    admissible = [["walk", "look"], ["walk", "look"]]
    assert meta_reasoning_rewards(steps, False, admissible_actions=admissible).rewards == [1.0, 1.0]
    first = meta_reasoning_rewards(["<reflection>start</reflection><action>look</action>"], False)
    assert first.rewards == [1.0]  # the released code treats a first-step reflection as following a failure
    with pytest.raises(ValueError, match="1 admissible-action lists for 2 steps"):
        meta_reasoning_rewards(steps, True, admissible_actions=[["walk"]])


def test_meta_reasoning_rewards_accept_parsed_steps_and_meta_format_reward():
    parsed = [parse_meta_step(t) for t in TRAJECTORY]
    assert all(isinstance(s, MetaStep) for s in parsed)
    assert meta_reasoning_rewards(parsed, True).rewards == meta_reasoning_rewards(TRAJECTORY, True).rewards
    assert meta_format_reward()(None, TRAJECTORY[2:5]) == [1.0, 0.0, 1.0]
