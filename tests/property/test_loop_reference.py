"""Vectorized estimators equal plain-Python loop references written from the papers' formulas."""

import math
import statistics

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import polyreward as pr
from polyreward.advantages import compute
from polyreward.rewards import hbpo_reward

from .strategies import reward_batches

SETTINGS = settings(max_examples=60, deadline=None)


def _groups(batch):
    members = {}
    for i, g in enumerate(batch.group_ids.tolist()):
        members.setdefault(g, []).append(i)
    return members.values()


def _gnorm(values, eps, singleton=0.0):
    """[(index, value)] -> {index: normalized}; NaN values are skipped; a lone value -> singleton rule."""
    present = [(i, v) for i, v in values if not math.isnan(v)]
    if len(present) == 1:
        return {present[0][0]: singleton if singleton == 0.0 else present[0][1] / (1 + eps)}
    if not present:
        return {}
    mean = statistics.fmean(v for _, v in present)
    std = statistics.stdev(v for _, v in present)
    return {i: (v - mean) / (std + eps) for i, v in present}


def _scores(batch):
    """Weighted sum per sample, NaN rewards skipped; NaN when every reward is NaN."""
    w = batch.weights.tolist()
    return [
        math.nan
        if all(math.isnan(x) for x in row)
        else sum(wk * x for wk, x in zip(w, row, strict=True) if not math.isnan(x))
        for row in batch.rewards.tolist()
    ]


def loop_grpo(batch, eps=1e-4):
    scores = _scores(batch)
    out = [0.0] * len(scores)
    for members in _groups(batch):
        for i, a in _gnorm([(i, scores[i]) for i in members], eps).items():
            out[i] = a
    return out


def loop_rloo(batch):
    scores = _scores(batch)
    out = [0.0] * len(scores)
    for members in _groups(batch):
        scored = [i for i in members if not math.isnan(scores[i])]
        for i in scored:
            others = [scores[j] for j in scored if j != i]
            out[i] = scores[i] - statistics.fmean(others) if others else 0.0
    return out


def loop_gdpo(batch, eps=1e-4):
    r, w = batch.rewards.tolist(), batch.weights.tolist()
    n, k = len(r), len(w)
    pre = [0.0] * n
    for c in range(k):
        for members in _groups(batch):
            for i, a in _gnorm([(i, r[i][c]) for i in members], eps).items():
                pre[i] += w[c] * a
    scorable = [i for i in range(n) if not all(math.isnan(x) for x in r[i])]
    out = [0.0] * n
    if len(scorable) > 1:
        mean = statistics.fmean(pre[i] for i in scorable)
        std = statistics.stdev(pre[i] for i in scorable)
        for i in scorable:
            out[i] = (pre[i] - mean) / (std + eps)
    return out


def _close(ours, reference, tol=1e-6):
    torch.testing.assert_close(ours, torch.tensor(reference, dtype=ours.dtype), atol=tol, rtol=tol)


@SETTINGS
@given(batch=reward_batches())
def test_grpo_rloo_gdpo_match_loops(batch):
    _close(compute("grpo", batch).advantages, loop_grpo(batch))
    _close(compute("rloo", batch).advantages, loop_rloo(batch))
    _close(compute("gdpo", batch).advantages, loop_gdpo(batch), 1e-5)


@SETTINGS
@given(batch=reward_batches(min_k=2, max_k=2))
def test_hdpo_conditional_matches_loop(batch):
    eps = 1e-6
    cond = batch.rewards[:, 1].tolist()
    expected = [0.0] * batch.num_samples
    for members in _groups(batch):
        qualifying = [(i, cond[i]) for i in members if cond[i] > 0]
        if len(qualifying) >= 2:
            for i, a in _gnorm(qualifying, eps).items():
                expected[i] = a
    _close(compute("hdpo", batch).channels["conditional"], expected)


@SETTINGS
@given(data=st.data())
def test_hbpo_matches_loop(data):
    n = data.draw(st.integers(2, 12))
    groups = data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    budgets = data.draw(st.lists(st.sampled_from([512.0, 1024.0, 2560.0]), min_size=n, max_size=n))
    lengths = data.draw(st.lists(st.integers(50, 4500), min_size=n, max_size=n))
    correct = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    reward = hbpo_reward(
        torch.tensor(lengths, dtype=torch.float64), torch.tensor(budgets, dtype=torch.float64), torch.tensor(correct)
    )
    batch = pr.RewardBatch(rewards=reward[:, None], names=["budget"], group_ids=groups, budgets=budgets)
    r = reward.tolist()
    expected = []
    for i in range(n):
        inter = _gnorm([(j, r[j]) for j in range(n) if groups[j] == groups[i]], 1e-6)[i]
        sub = [r[j] for j in range(n) if groups[j] == groups[i] and budgets[j] == budgets[i]]
        expected.append(inter + statistics.fmean(sub) - 4 * math.cos(math.pi * budgets[i] / 8192))
    _close(compute("hbpo", batch).advantages, expected)


@SETTINGS
@given(data=st.data())
def test_dual_level_matches_loop(data):
    n = data.draw(st.integers(1, 8))
    groups = data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    turns = [data.draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=1, max_size=4)) for _ in range(n)]
    width = max(len(t) for t in turns)
    padded = [t + [None] * (width - len(t)) for t in turns]
    batch = pr.RewardBatch(
        rewards=torch.zeros(n, 1, dtype=torch.float64),
        names=["x"],
        group_ids=groups,
        turn_rewards=torch.tensor([[math.nan if v is None else v for v in row] for row in padded], dtype=torch.float64),
    )
    lam, eps = 0.9, 1e-6
    totals = [sum(t) for t in turns]
    returns = [[sum(lam ** (k - s) * t[k] for k in range(s, len(t))) for s in range(len(t))] for t in turns]
    expected = [[0.0] * width for _ in range(n)]
    for i in range(n):
        same = [j for j in range(n) if groups[j] == groups[i]]
        traj = _gnorm([(j, totals[j]) for j in same], eps, singleton="raw")[i]
        for s in range(len(turns[i])):
            turn = _gnorm([(j, returns[j][s]) for j in same if s < len(turns[j])], eps, singleton="raw")[i]
            expected[i][s] = (traj + turn) / 2
    _close(compute("dual_level", batch, lam=lam).advantages, expected)
