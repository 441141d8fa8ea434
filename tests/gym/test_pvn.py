"""PVN auxiliary loss: hand-computed TD targets, loop-vs-vectorized, random indicators, and a tabular
successor measure learned to its closed-form values."""

from __future__ import annotations

import pytest
import torch

from polyreward.gym.pvn import PVNHead, RandomIndicators, indicator_tasks, pvn_targets, pvn_td_loss

# One transition, A = 2 actions, M = 2 tasks. psi_next[0, a, i]: task 0 is largest under action 0 (2),
# task 1 under action 1 (5), so the per-task max picks different actions.
PSI_NEXT = torch.tensor([[[2.0, 1.0], [0.0, 5.0]]])
IND_NEXT = torch.tensor([[1.0, 0.0]])


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread avoids oversubscribing the shared CPU cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_spec_targets_max_rule():
    # 1 + 0.9 * 2 = 2.8 and 0 + 0.9 * 5 = 4.5 (algorithms-classic.md §7)
    targets = pvn_targets(IND_NEXT, PSI_NEXT, 0.9, "max")
    torch.testing.assert_close(targets, torch.tensor([[2.8, 4.5]]))


def test_policy_rule_with_probs_and_uniform():
    # probs [0.25, 0.75]: task 0: 0.25*2 + 0.75*0 = 0.5 -> 1 + 0.45 = 1.45; task 1: 0.25*1 + 0.75*5 = 4 -> 3.6
    probs = torch.tensor([[0.25, 0.75]])
    torch.testing.assert_close(pvn_targets(IND_NEXT, PSI_NEXT, 0.9, "policy", next_probs=probs), torch.tensor([[1.45, 3.6]]))
    # uniform (the released code's mean over actions): task 0: 1 -> 1.9; task 1: 3 -> 2.7
    torch.testing.assert_close(pvn_targets(IND_NEXT, PSI_NEXT, 0.9, "policy"), torch.tensor([[1.9, 2.7]]))


def test_no_bootstrap_past_terminal():
    ind = IND_NEXT.repeat(2, 1)
    targets = pvn_targets(ind, PSI_NEXT.repeat(2, 1, 1), 0.9, "max", done=torch.tensor([True, False]))
    torch.testing.assert_close(targets, torch.tensor([[1.0, 0.0], [2.8, 4.5]]))


def test_loss_by_hand_and_targets_detached():
    # psi(s, a=0) = [1, 0]; errors 2.8 - 1 = 1.8 and 4.5 - 0 = 4.5; 0.5 * (3.24 + 20.25) / 2 = 5.8725
    psi = torch.tensor([[[1.0, 0.0], [3.0, 3.0]]], requires_grad=True)
    psi_next = PSI_NEXT.clone().requires_grad_(True)
    loss = pvn_td_loss(psi, torch.tensor([0]), IND_NEXT, psi_next, 0.9, "max")
    assert float(loss.detach()) == pytest.approx(5.8725)
    loss.backward()
    assert psi_next.grad is None
    # d loss / d psi[0, 0, i] = -(y_i - psi_i) / M; the action-1 row gets no gradient
    torch.testing.assert_close(psi.grad, torch.tensor([[[-0.9, -2.25], [0.0, 0.0]]]))


def test_loop_matches_vectorized():
    gen = torch.Generator().manual_seed(3)
    b, a, m, gamma = 7, 3, 5, 0.8
    psi, psi_next = torch.randn(b, a, m, generator=gen), torch.randn(b, a, m, generator=gen)
    actions = torch.randint(0, a, (b,), generator=gen)
    ind = (torch.rand(b, m, generator=gen) < 0.3).float()
    done = torch.rand(b, generator=gen) < 0.3
    probs = torch.softmax(torch.randn(b, a, generator=gen), -1)
    for rule in ("max", "policy"):
        total = 0.0
        for row in range(b):
            for task in range(m):
                nxt = [float(psi_next[row, act, task]) for act in range(a)]
                boot = max(nxt) if rule == "max" else sum(float(probs[row, act]) * nxt[act] for act in range(a))
                target = float(ind[row, task]) + (0.0 if done[row] else gamma * boot)
                total += 0.5 * (target - float(psi[row, actions[row], task])) ** 2
        loss = pvn_td_loss(psi, actions, ind, psi_next, gamma, rule, done, probs if rule == "policy" else None)
        assert float(loss) == pytest.approx(total / (b * m), rel=1e-5)


def test_shape_errors_name_the_arguments():
    with pytest.raises(ValueError, match="psi_next"):
        pvn_targets(torch.zeros(2, 3), torch.zeros(2, 4, 2), 0.9)
    with pytest.raises(ValueError, match="rule"):
        pvn_targets(IND_NEXT, PSI_NEXT, 0.9, "mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="actions"):
        pvn_td_loss(PSI_NEXT, torch.tensor([0, 1]), IND_NEXT, PSI_NEXT, 0.9)


def test_random_indicators_deterministic_sparse_and_batch_independent():
    gen = torch.Generator().manual_seed(0)
    reference = torch.randn(4000, 6, generator=gen) * 3 + 5
    first = RandomIndicators(6, 8, seed=11, sparsity=0.1).calibrate(reference)
    again = RandomIndicators(6, 8, seed=11, sparsity=0.1).calibrate(reference)
    other = RandomIndicators(6, 8, seed=12, sparsity=0.1).calibrate(reference)
    labels = first(reference)
    assert set(labels.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(labels, again(reference))
    assert not torch.equal(labels, other(reference))
    # each task's set holds ~10% of the reference states (threshold = the 90% quantile)
    assert torch.all((labels.mean(0) - 0.1).abs() < 0.005)
    # a state's labels do not depend on the rest of its batch once calibrated
    torch.testing.assert_close(first(reference[:5]), labels[:5])
    # the functional form with the same reference gives the same labels
    torch.testing.assert_close(indicator_tasks(reference[:5], 8, 11, 0.1, reference=reference), labels[:5])


def test_indicator_tasks_on_its_own_batch_and_uncalibrated_error():
    obs = torch.randn(1000, 4, generator=torch.Generator().manual_seed(1))
    labels = indicator_tasks(obs, num_tasks=3, seed=0, sparsity=0.05)
    assert labels.shape == (1000, 3)
    assert torch.all((labels.sum(0) - 50).abs() <= 1)
    with pytest.raises(RuntimeError, match="calibrate"):
        RandomIndicators(4, 3, seed=0)(obs)


def test_pvn_head_shape():
    head = PVNHead(hidden_dim=16, num_actions=3, num_tasks=5)
    assert head(torch.zeros(4, 16)).shape == (4, 3, 5)


def test_learns_the_successor_measure_of_a_cycle():
    """Deterministic cycle s0 -> s1 -> s2 -> s0, one action, task Σ = {s1}, γ = 0.5.

    ψ(s) = sum_t γ^t 1[S_{t+1} = s1]: from s0 the visits are at t = 0, 3, 6, ... -> 1 / (1 - γ³) = 8/7;
    from s2 at t = 1, 4, ... -> γ / (1 - γ³) = 4/7; from s1 at t = 2, 5, ... -> γ² / (1 - γ³) = 2/7.
    A linear head on one-hot states trained with the TD loss (bootstrapping from itself, no gradient
    through the target) must reach these values; the loss on the fixed batch goes down.
    """
    torch.manual_seed(0)
    obs, next_obs = torch.eye(3), torch.eye(3)[[1, 2, 0]]
    ind_next = torch.tensor([[1.0], [0.0], [0.0]])  # 1[s' = s1]
    head = PVNHead(hidden_dim=3, num_actions=1, num_tasks=1)
    opt = torch.optim.Adam(head.parameters(), lr=0.1)
    actions = torch.zeros(3, dtype=torch.long)
    losses = []
    for _ in range(300):
        with torch.no_grad():
            psi_next = head(next_obs)
        loss = pvn_td_loss(head(obs), actions, ind_next, psi_next, 0.5, "max")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 1e-3 * losses[0]
    torch.testing.assert_close(head(obs)[:, 0, 0].detach(), torch.tensor([8 / 7, 2 / 7, 4 / 7]), atol=2e-3, rtol=0)


def test_trunk_and_heads_fit_a_fixed_batch():
    """A small trunk + PVNHead on a fixed random batch with random indicators: the TD loss falls."""
    gen = torch.Generator().manual_seed(5)
    obs, next_obs = torch.randn(64, 4, generator=gen), torch.randn(64, 4, generator=gen)
    actions = torch.randint(0, 2, (64,), generator=gen)
    done = torch.rand(64, generator=gen) < 0.1
    indicators = RandomIndicators(4, 16, seed=0, sparsity=0.2).calibrate(torch.cat([obs, next_obs]))
    ind_next = indicators(next_obs)
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh())
    head = PVNHead(32, 2, 16)
    opt = torch.optim.Adam([*trunk.parameters(), *head.parameters()], lr=1e-2)
    first = last = 0.0
    for step in range(300):
        with torch.no_grad():
            psi_next = head(trunk(next_obs))
        loss = pvn_td_loss(head(trunk(obs)), actions, ind_next, psi_next, 0.5, "max", done)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first, last = (float(loss.detach()),) * 2 if step == 0 else (first, float(loss.detach()))
    assert last < 0.2 * first
