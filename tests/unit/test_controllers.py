"""Controllers: spec numbers, sampler behaviour on constructed histories, schedule windows."""

import math
import types

import pytest
import torch

from polyreward.batch import RewardBatch
from polyreward.lm.controllers import StepPlan, build_controllers, duration_weights
from polyreward.lm.data import PromptSource
from polyreward.lm.dpa import directional_sweep, pareto_mask, preference_vector, rejection_pick
from polyreward.lm.samplers import (
    LearningProgress,
    ValueResample,
    ema_update,
    learning_progress_probs,
    stage_weights,
    vspo_values,
)
from polyreward.rewards import RewardSet
from polyreward.rewards.schedules import Alternating
from polyreward.rewards.selection import balance_score, bstar_balance_table, bstar_choose, pass_rate_band


def r(prompts, completions, **kw):
    return [0.0] * len(completions)


@pytest.mark.parametrize(("good", "kept", "expected"), [(4, 5, 0.4), (10, 12, 0.8333), (0, 3, 0.0)])
def test_balance_score_spec_cases(good, kept, expected):
    assert balance_score([good], [kept]) == pytest.approx(expected, abs=1e-4)


def test_bstar_table_matches_the_per_query_balance_score():
    torch.manual_seed(0)
    scores = torch.rand(2, 5, 6) * 2 - 1
    correct = torch.rand(2, 5, 6) > 0.4
    thresholds = [-0.5, 0.0, 0.5]
    table = bstar_balance_table(scores, correct, thresholds, n_star=3)
    for t in range(2):
        for h, tau in enumerate(thresholds):
            kept = scores[t] > tau
            expected = balance_score((kept & correct[t]).sum(-1), kept.sum(-1), n_star=3)
            assert float(table[t, h]) == pytest.approx(expected)


def test_bstar_choose_prefers_the_threshold_that_drops_wrong_samples():
    # one query, 4 samples: correct ones score 0.9 and 0.8, wrong ones 0.3 and 0.1 (temperature 0);
    # at temperature 1 every sample is wrong
    scores = torch.tensor([[[0.9, 0.8, 0.3, 0.1]], [[0.9, 0.8, 0.3, 0.1]]])
    correct = torch.tensor([[[True, True, False, False]], [[False] * 4]])
    table = bstar_balance_table(scores, correct, [0.0, 0.5, 0.85], n_star=2)
    # tau = 0: 2/2 * 2/4 = 0.5; tau = 0.5: 1 * 2/2 = 1; tau = 0.85: 1/2 * 1/1 = 0.5
    assert table[0].tolist() == pytest.approx([0.5, 1.0, 0.5]) and table[1].tolist() == [0.0, 0.0, 0.0]
    assert bstar_choose(table, [0.7, 1.0], [0.0, 0.5, 0.85]) == (0.7, 0.5, 1.0)


def test_bstar_duplicates_are_not_kept():
    scores = torch.tensor([[[1.0, 1.0]]])
    correct = torch.tensor([[[True, True]]])
    dup = torch.tensor([[[False, True]]])
    assert float(bstar_balance_table(scores, correct, [0.0], n_star=2, duplicate=dup)[0, 0]) == pytest.approx(0.5)


def test_dpa_spec_case_theta_30():
    v = preference_vector(30)
    rewards = torch.tensor([[0.8, 0.2], [0.6, 0.9], [0.9, -0.5]])
    assert (rewards.double() @ v).tolist() == pytest.approx([0.7928, 0.9696, 0.5294], abs=1e-4)
    keep = rejection_pick(rewards, torch.zeros(3, dtype=torch.long), v[None])
    assert keep.tolist() == [False, True, False]


def test_rejection_pick_uses_each_groups_own_vector():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    keep = rejection_pick(rewards, torch.tensor([0, 0, 1, 1]), torch.stack([preference_vector(0), preference_vector(90)]))
    assert keep.tolist() == [True, False, False, True]


def test_pareto_mask_and_directional_sweep():
    points = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.4, 0.4], [0.0, 1.0]])
    assert pareto_mask(points).tolist() == [True, True, False, True]
    sweep = directional_sweep(lambda v: v[None].repeat(3, 1), [0, 45, 90])
    assert [s["pareto"] for s in sweep] == [True, True, True]
    assert sweep[1]["means"] == pytest.approx([math.sqrt(0.5)] * 2)


def test_alternating_schedule_windows():
    s = Alternating(window=5, first=3, a=1.0, b=0.2)
    assert [s(t) for t in range(11)] == [1.0, 1.0, 1.0, 0.2, 0.2, 1.0, 1.0, 1.0, 0.2, 0.2, 1.0]
    with pytest.raises(ValueError, match="first <= window"):
        Alternating(window=2, first=3)


def test_duration_weights():
    w = duration_weights(torch.tensor([1.0, 3.0, float("nan"), 0.0]))
    assert w.tolist() == pytest.approx([0.5, 1.5, 1.0, 1.0])
    assert duration_weights(torch.tensor([1.0, 3.0]), "inverse").tolist() == pytest.approx([1.5, 0.5])
    assert duration_weights(torch.tensor([1.0, 1.0, 1.0, 97.0]), max_weight=2.0).tolist()[-1] == 2.0


def test_learning_progress_probs():
    lp = torch.tensor([0.3, 0.1, 0.0])
    p = learning_progress_probs(lp, torch.tensor([True, True, True]), epsilon=0.1)
    assert p.tolist() == pytest.approx([0.9 * 0.75 + 0.1 / 3, 0.9 * 0.25 + 0.1 / 3, 0.1 / 3])
    p = learning_progress_probs(lp, torch.tensor([True, False, True]), epsilon=0.0)
    assert p.tolist() == [0.0, 1.0, 0.0]
    assert ema_update(0.0, 0.0, 1.0, 0.5, 0.1) == (0.5, 0.1)


def _batch(values, group_size, name="r"):
    return RewardBatch(
        rewards=torch.tensor(values)[:, None], names=[name], group_ids=torch.arange(len(values)) // group_size
    )


def test_learning_progress_prefers_the_task_whose_success_is_changing():
    rows = [{"prompt": "a", "task": "moving"}, {"prompt": "b", "task": "flat"}]
    lp = LearningProgress(reward="r", task_column="task", epsilon=0.0)
    lp.bind(RewardSet([r]), PromptSource(rows), seed=0)
    for success in (0.0, 0.5, 1.0, 1.0):  # 'moving' rises, 'flat' stays at 0.5
        lp.observe(0, _batch([success, success, 0.5, 0.5], 2), [0, 1], [], [])
    probs = lp.probabilities()
    assert probs["moving"] == pytest.approx(1.0) and probs["flat"] == pytest.approx(0.0)
    plan = StepPlan(position=0, size=6)
    lp.plan(1, plan, probe=None)
    assert plan.indices == [0] * 6


def test_vspo_values_and_resampling_of_known_flat_rows():
    assert vspo_values(torch.tensor([0.25, 0.0, math.nan]), torch.tensor([3, 3, 0]), bonus=0.2).tolist() == [
        pytest.approx(0.35),
        pytest.approx(0.1),
        math.inf,
    ]
    rows = [{"prompt": f"p{i}"} for i in range(4)]
    source = PromptSource(rows, seed=0)
    vs = ValueResample(reward="r", bonus=0.0)
    vs.bind(RewardSet([r]), source, seed=0)
    first = source.indices(0, 2)
    vs.observe(0, _batch([1.0, 1.0, 0.0, 1.0], 2), first, [], [])  # first row flat, second varies
    plan = StepPlan(position=0, size=2)  # the same two rows again
    metrics = vs.plan(1, plan, probe=None)
    # the flat row is replaced by a row never tried (infinite value); the varying row stays
    assert plan.indices[1] == first[1] and plan.indices[0] not in first
    assert metrics["vspo/replaced"] == 1.0


def test_stage_weights_and_pass_rate_band():
    stages = [{"until": 3, "weights": {"a": 1}}, {"until": 5, "weights": {"b": 1}}, {"weights": {"a": 1, "b": 1}}]
    assert [stage_weights(t, stages)[0] for t in (0, 2, 3, 4, 5, 99)] == [0, 0, 1, 1, 2, 2]
    assert pass_rate_band([0.0, 0.5, 1.0, math.nan], 0.1, 0.9).tolist() == [False, True, False, True]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"kind": "staged_tasks", "params": {"stages": [{"weights": {"a": 1}}, {"weights": {"b": 1}}]}},
            "increasing 'until'",
        ),
        ({"kind": "learning_progress", "params": {"reward": "r", "alpha_fast": 0.1, "alpha_slow": 0.5}}, "alpha_slow"),
        ({"kind": "duration_weighting", "params": {"duration": "d", "mode": "square"}}, "mode"),
        ({"kind": "bstar", "params": {"correct": "c", "every": 0}}, "every"),
        ({"kind": "bstar", "extra": 1}, "unknown keys"),
    ],
)
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        build_controllers([spec])


def test_dpa_conditions_the_rows_an_earlier_chooser_picked_and_must_come_after_it():
    exit_spec = {"kind": "exit", "params": {"reward": "r"}}
    dpa_spec = {"kind": "dpa", "params": {"objectives": ["r", "s"]}}
    with pytest.raises(ValueError, match=r"'dpa' conditions the step's prompts, so list it after \['exit'\]"):
        build_controllers([dpa_spec, exit_spec])
    (dpa,) = build_controllers([dpa_spec])
    dpa.bind(types.SimpleNamespace(names=["r", "s"]), types.SimpleNamespace(rows=[{"prompt": "base"}]), seed=0)
    plan = StepPlan(0, 1, indices=[0], rows=[{"prompt": "chosen by exit", "answer": "7"}])
    dpa.plan(0, plan, probe=None)
    assert plan.rows[0]["answer"] == "7" and "chosen by exit" in plan.rows[0]["prompt"]
