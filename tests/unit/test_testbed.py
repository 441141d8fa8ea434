"""The fast testbed: rewards by hand, sampling, determinism, a short run that learns, evidence scripts."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from polyreward.rewards import RewardSet
from polyreward.testbed import (
    BudgetTask,
    Completion,
    GRUPolicy,
    MultiTurnTask,
    Prompt,
    SumTask,
    ToolTask,
    TrainConfig,
    sample,
    sequence_logprobs,
    train,
)
from polyreward.testbed import evidence as ev
from polyreward.testbed import rewards as R
from polyreward.testbed.train import arm_batch, score
from polyreward.testbed.vocab import BOS, END, FILL, HIDDEN, PAD, SEP, TOOL

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def completion(*tokens: int, env: tuple[int, ...] = (), ended: bool = True) -> Completion:
    return Completion(tuple(tokens), tuple(i in env for i in range(len(tokens))), ended)


# ---------------------------------------------------------------------- rewards by hand
def test_sum_rewards_by_hand():
    p = Prompt(tokens=(BOS, 3, 4), target=7, budget=3)
    cases = {
        (3, 4, END): (1.0, 1.0, 1.0),  # copy: right, well formed, 3 tokens
        (7, END): (1.0, 1.0, 1.0),
        (3, FILL, 4, END): (1.0, 0.0, 0.75),  # filler: sum still right, format broken, one over budget
        (2, 2, 2, 2, 2, 2, 2, END): (0.0, 1.0, 0.0),  # 8 tokens: 5 over a budget of 3 with slack 4
        (END,): (0.0, 0.0, 1.0),  # no digit: neither correct nor well formed
    }
    for tokens, (c, f, n) in cases.items():
        comp = [completion(*tokens)]
        assert R.correct([p], comp) == [c], tokens
        assert R.format_ok([p], comp) == [f], tokens
        assert R.length_budget(4)([p], comp) == [n], tokens
    truncated = completion(3, 4, ended=False)
    assert R.correct([p], [truncated]) == [1.0] and R.format_ok([p], [truncated]) == [0.0]


def test_tool_rewards_count_only_policy_digits():
    p = Prompt(tokens=(BOS, HIDDEN, 4), target=9, reveal=5)
    used = completion(TOOL, 5, 5, 4, END, env=(1,))  # the injected 5 does not count towards the sum
    assert used.digits == (5, 4) and used.tool_calls == 1
    assert R.correct([p], [used]) == [1.0] and R.format_ok([p], [used]) == [1.0]
    assert R.tool_efficiency([p], [used]) == [0.5] and R.tool_calls([p], [used]) == [1.0]
    guessed = completion(1, 4, END)
    assert R.tool_efficiency([p], [guessed]) == [0.0]  # wrong: HDPO's tool reward is 0
    assert R.tool_efficiency([p], [completion(5, 4, END)]) == [1.0]  # right without a call


def test_hbpo_reward_matches_spec_scaled():
    p = Prompt(tokens=(BOS, PAD, PAD, 3, 17), target=3, budget=4)
    within, over = completion(3, END), completion(3, FILL, FILL, FILL, FILL, FILL, END)
    fn = R.hbpo_budget(12)
    f2 = 4 * math.cos(math.pi * 4 / 24)
    f1 = 4 * math.cos(math.pi * 7 / 24) - 3 / 12
    assert fn([p, p], [within, over]) == pytest.approx([f2, f1], abs=1e-5)
    assert fn([p], [completion(4, END)]) == [0.0]


def test_turn_rewards_by_hand():
    p = Prompt(tokens=(BOS, 1, 2), target=3, turn_targets=(3, 5, 7), observations=(3, 4))
    c = completion(1, 2, SEP, 3, 5, SEP, 4, 3, 4, SEP, env=(3, 6))
    assert c.turns() == [(1, 2, SEP), (5, SEP), (3, 4, SEP)]
    assert R.turn_scores(p, c) == [1.0, 1.0, 1.0]
    short = completion(2, 2, SEP, 3, 5, env=(3,), ended=False)  # turn 2 never finished
    assert R.turn_scores(p, short) == [0.0] and R.turn_match([p], [short]) == [0.0]


# ---------------------------------------------------------------------- sampling
@pytest.mark.parametrize("task", [SumTask(), ToolTask(), BudgetTask(), MultiTurnTask()], ids=lambda t: t.name)
def test_sampling_shapes_and_logprobs(task):
    torch.manual_seed(0)
    policy = GRUPolicy(task.actions)
    g = torch.Generator().manual_seed(0)
    prompts = task.expand(task.sample_prompts(3, g), 4)
    rollout = sample(policy, task, prompts, g)
    n, width = 12, task.prompt_length + task.max_new_tokens
    assert rollout.tokens.shape == rollout.policy_mask.shape == rollout.old_logprobs.shape == (n, width)
    assert len(rollout.completions) == n and not rollout.policy_mask[:, : task.prompt_length].any()
    sampled = rollout.tokens[rollout.policy_mask]
    assert all(int(t) in task.actions for t in sampled)
    for c, mask in zip(rollout.completions, rollout.policy_mask, strict=True):
        assert c.num_tokens == int(mask.sum())
    # scoring the whole sequence at once gives the sampling-time log-probabilities
    with torch.no_grad():
        again = sequence_logprobs(policy, rollout)
    torch.testing.assert_close(again, rollout.old_logprobs, atol=1e-5, rtol=1e-5)


def test_tool_call_injects_the_hidden_digit():
    task = ToolTask()
    policy = GRUPolicy([TOOL])  # can only call the tool
    p = Prompt(tokens=(BOS, HIDDEN, 4), target=11, reveal=7)
    rollout = sample(policy, task, [p], torch.Generator().manual_seed(0))
    assert rollout.completions[0].tokens[:2] == (TOOL, 7) and rollout.completions[0].from_env[:2] == (False, True)


def test_multiturn_env_injects_observations_and_stops_after_last_turn():
    task = MultiTurnTask(n_turns=2, max_new_tokens=10)
    p = task.sample_prompts(1, torch.Generator().manual_seed(3))[0]
    rollout = sample(GRUPolicy([SEP]), task, [p], torch.Generator().manual_seed(0))
    assert rollout.completions[0].tokens == (SEP, p.observations[0], SEP) and rollout.completions[0].ended
    assert rollout.token_turn[0, task.prompt_length :].tolist()[:3] == [0, -1, 1]


def test_budget_task_gives_subgroups_their_budgets():
    task = BudgetTask()
    prompts = task.expand(task.sample_prompts(2, torch.Generator().manual_seed(0)), 8)
    assert [p.budget for p in prompts[:8]] == [2, 2, 4, 4, 6, 6, 8, 8]
    assert len({p.tokens[:-1] for p in prompts[:8]}) == 1


def test_arm_batch_conditions_on_raw_gate_then_selects_and_weights():
    task = SumTask(n_args=2)
    prompts = [Prompt(tokens=(BOS, 3, 4), target=7, budget=3)] * 2
    g = torch.Generator().manual_seed(0)
    rollout = sample(GRUPolicy(task.actions), task, prompts, g)
    rollout.completions[:] = [completion(7, END), completion(6, END)]
    full = score(task, RewardSet(task.reward_functions()), rollout, 2)
    cfg = TrainConfig(rewards=("correct", "length"), weights={"length": 0.5}, condition={"length": "correct"})
    batch = arm_batch(full, cfg)
    assert batch.names == ("correct", "length") and batch.weights.tolist() == [1.0, 0.5]
    assert batch["length"].tolist() == [1.0, 0.0]  # the wrong answer's length reward is not paid


# ---------------------------------------------------------------------- training
def test_training_is_deterministic_per_seed():
    cfg = TrainConfig(steps=3, prompts_per_step=4, eval_prompts=8, seed=5)
    a, b = train(SumTask(), cfg), train(SumTask(), cfg)
    assert a.history == b.history and a.final == b.final
    c = train(SumTask(), dataclasses.replace(cfg, seed=6))
    assert c.history != a.history


def test_short_run_learns_the_easy_reward():
    torch.set_num_threads(1)
    result = train(SumTask(n_args=2), TrainConfig(steps=60, seed=0))
    first = sum(h["reward/format"] for h in result.history[:5]) / 5
    assert first < 0.6 and result.final["reward/format"] > 0.9


def test_pretraining_gives_a_competent_base():
    cfg = TrainConfig(steps=0, pretrain_steps=150, eval_prompts=64)
    assert train(ToolTask(), cfg).final["correct/visible"] > 0.8


@pytest.mark.parametrize("estimator", ["gdpo", "hdpo", "hbpo", "dual_level"])
def test_each_estimator_trains(estimator):
    task, cfg = SumTask(), TrainConfig(steps=2, prompts_per_step=4, eval_prompts=8, estimator=estimator)
    if estimator == "hdpo":
        task = ToolTask()
        cfg = dataclasses.replace(cfg, rewards=("correct", "tool_efficiency"), estimator_params={"gate": "correct"})
    elif estimator == "hbpo":
        task, cfg = BudgetTask(), dataclasses.replace(cfg, rewards=("hbpo",), estimator_params={"max_length": 12})
    elif estimator == "dual_level":
        task = MultiTurnTask()
    assert len(train(task, cfg).history) == 2


# ---------------------------------------------------------------------- statistics and scripts
def test_t_interval_and_verdicts():
    e = ev.t_interval([1.0, 2.0, 3.0])
    assert e["mean"] == 2.0 and e["high"] - 2.0 == pytest.approx(4.303 * 1.0 / math.sqrt(3), rel=1e-4)
    better = ev.verdict(ev.Comparison("a", "b", "cost", better="lower"), ev.paired_effect([1, 1, 1.1], [2, 2.1, 2]))
    assert better.startswith("a < b on cost (better)")
    same = ev.verdict(ev.Comparison("a", "b", "m"), ev.paired_effect([1, 2, 3], [2, 1, 3]))
    assert "no significant difference" in same
    assert ev.t_interval([1.0, math.nan])["n"] == 1


SCRIPTS = [
    ("evidence_gdpo", None),
    ("evidence_conditioning", None),
    ("evidence_hdpo", None),
    ("evidence_hdpo", "hard"),
    ("evidence_hbpo", None),
    ("evidence_hbpo", "hard"),
    ("evidence_dual_level", None),
    ("evidence_dual_level", "hard"),
]


@pytest.mark.parametrize(("script", "variant"), SCRIPTS)
def test_evidence_script_smoke(script, variant, tmp_path):
    extra = ["--variant", variant] if variant else []
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{script}.py"), "--smoke", "--out", str(tmp_path), *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    name = f"{script}_{variant}" if variant else script
    assert [p.name for p in tmp_path.glob("*.json")] == [f"{name}.json"]  # a variant never overwrites the default
    report = json.loads((tmp_path / f"{name}.json").read_text())
    assert (tmp_path / f"{name}.png").stat().st_size > 0
    assert report["verdicts"] and len(report["seeds"]) == 2
    for arm in report["arms"]:
        assert all(len(v) == 2 for v in report["final"][arm].values())


def test_bstar_script_smoke(tmp_path):
    """B-STaR self-improvement: per-iteration curves, the tuned fixed pair, balance-score comparisons."""
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "evidence_bstar.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "evidence_bstar.json").read_text())
    assert (tmp_path / "evidence_bstar.png").stat().st_size > 0
    assert report["seeds"] == [0, 1] and set(report["arms"]) == {"bstar", "fixed_T1.0_tau0", "fixed_best"}
    assert list(report["tuning"]["best"]) in ([t, h] for t in (1.0, 1.3) for h in (0.0, 1.0))
    for arm in report["arms"]:
        assert all(len(v) == 2 for v in report["final"][arm].values())
        assert all(len(c) == 3 for c in report["curves"][arm]["greedy"])  # base + 2 iterations
        assert all(0 <= b <= 1 for c in report["curves"][arm]["balance"] for b in c)
    assert len(report["verdicts"]) == len(report["comparisons"]) == 8


def test_sampling_temperature():
    """Temperature 1 is the default path draw for draw; 0 is greedy; T > 1 flattens the distribution."""
    task = SumTask(n_args=2)
    torch.manual_seed(0)
    policy = GRUPolicy(task.actions)
    prompts = task.sample_prompts(64, torch.Generator().manual_seed(1))
    a = sample(policy, task, prompts, torch.Generator().manual_seed(2))
    b = sample(policy, task, prompts, torch.Generator().manual_seed(2), temperature=1.0)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.old_logprobs, b.old_logprobs)
    g1 = sample(policy, task, prompts, torch.Generator().manual_seed(3), temperature=0)
    g2 = sample(policy, task, prompts, torch.Generator().manual_seed(4), temperature=0)
    assert torch.equal(g1.tokens, g2.tokens)


def test_demo_noise_and_drop_are_off_by_default():
    """The new demonstration flaws draw nothing when 0, so the stored evidence results reproduce."""
    import random

    prompt = SumTask(n_args=3).sample_prompts(1, torch.Generator().manual_seed(0))[0]
    rng = random.Random(0)
    assert SumTask(n_args=3).demonstration(prompt, rng) == [(t, False) for t in prompt.tokens[1:]] + [(END, False)]
    assert rng.random() == random.Random(0).random()
    dropped = SumTask(n_args=3, demo_drop=1.0).demonstration(prompt, random.Random(0))
    assert [t for t, _ in dropped] == [*prompt.tokens[1:3], END]
    tool = ToolTask(n_args=3, demo_noise=0.0, demo_tool_prob=0.0)
    p = tool.sample_prompts(1, torch.Generator().manual_seed(0))[0]
    rng = random.Random(5)
    tool.demonstration(p, rng)
    ref = random.Random(5)
    ref.random(), ref.randrange(10)  # the tool draw and the guess, nothing else
    assert rng.random() == ref.random()
