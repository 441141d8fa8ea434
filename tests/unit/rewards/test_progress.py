"""SPA-RL step rewards and Robo-Dopamine hop labels / progress: spec cases and independent checks."""

import math

import numpy as np
import pytest
import torch

from polyreward.batch import RewardBatch
from polyreward.rewards.progress import (
    format_hop,
    fuse_progress,
    hop_bucket,
    hop_label,
    parse_hop,
    progress_estimator_loss,
    progress_from_hops,
    spa_step_rewards,
)


# ---------------------------------------------------------------------------------------------- SPA-RL
def test_spa_spec():
    c = torch.tensor([[0.1, 0.3, 0.5]])
    assert progress_estimator_loss(c, torch.tensor([1.0])).item() == pytest.approx(0.01)  # (0.9 - 1)^2
    assert spa_step_rewards([0.1, 0.3, 0.5], [True, False, True]).tolist() == pytest.approx([0.6, 0.3, 1.0])


def test_spa_last_step_gets_final_grounding_even_if_not_executable():
    r = spa_step_rewards([0.0, 0.0], [True, False], grounding=0.5, final_grounding=0.2)
    assert r.tolist() == pytest.approx([0.5, 0.2])


def test_spa_padded_batch_matches_rows_and_feeds_reward_batch():
    c = torch.tensor([[0.1, 0.3, 0.5], [0.2, 0.2, 9.0], [0.4, 9.0, 9.0]])
    ex = torch.tensor([[1, 0, 1], [0, 1, 1], [0, 0, 0]]).bool()
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]]).bool()
    r = spa_step_rewards(c, ex, mask)
    for row in range(3):
        n = int(mask[row].sum())
        assert r[row, :n].tolist() == pytest.approx(spa_step_rewards(c[row, :n], ex[row, :n]).tolist())
        assert all(math.isnan(v) for v in r[row, n:].tolist())
    batch = RewardBatch.from_turns(r)
    assert batch.turn_mask.tolist() == mask.tolist()
    assert batch["turns"].tolist() == pytest.approx([1.9, 0.2 + 0.7, 0.4 + 0.5])


def test_estimator_loss_masked_reductions_and_gradient():
    c = torch.tensor([[0.1, 0.3, 0.5], [0.5, 0.2, 7.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]]).bool()
    r = torch.tensor([1.0, 0.0])
    per = progress_estimator_loss(c, r, mask, reduction="none")
    assert per.tolist() == pytest.approx([0.01, 0.49])
    assert progress_estimator_loss(c, r, mask, reduction="sum").item() == pytest.approx(0.5)
    progress_estimator_loss(c, r, mask).backward()
    # d/dc_t mean_n (S_n - R_n)^2 = (S_n - R_n) for N = 2 (2 * (.) / 2), 0 on masked steps
    assert c.grad.flatten().tolist() == pytest.approx([-0.1, -0.1, -0.1, 0.7, 0.7, 0.0])


# ---------------------------------------------------------------------------------------------- hops
def test_hop_label_spec():
    assert hop_label(0, 2, 5, 10) == pytest.approx(0.375)
    assert hop_label(0, 6, 3, 10) == pytest.approx(-0.5)
    assert hop_label(0, 4, 4, 10) == 0.0
    assert hop_label(0, 0, 10, 10) == 1.0 and hop_label(0, 10, 0, 10) == -1.0


def test_hop_label_vectorized_equals_progress_formulation():
    first, last = 3, 40
    before, after = torch.meshgrid(torch.arange(first, last + 1), torch.arange(first, last + 1), indexing="ij")
    hops = hop_label(first, before, after, last)
    # independent form: with progress x = (i - first) / (last - first), a gain is a fraction of what
    # remained (1 - x_b), a loss a fraction of what was done (x_b)
    xb, xa = (before - first) / (last - first), (after - first) / (last - first)
    gain = torch.where(xb < 1, (xa - xb) / (1 - xb).clamp(min=1e-12), torch.zeros_like(xb))
    loss = torch.where(xb > 0, (xa - xb) / xb.clamp(min=1e-12), torch.zeros_like(xb))
    expected = torch.where(xa > xb, gain, torch.where(xa < xb, loss, torch.zeros_like(xb)))
    assert torch.allclose(hops.double(), expected.double(), atol=1e-6)
    assert hops.min() >= -1 and hops.max() <= 1
    with pytest.raises(ValueError, match="within"):
        hop_label(0, 11, 3, 10)


def test_hop_buckets_spec_and_edges():
    assert (hop_bucket(37.5), hop_bucket(-50), hop_bucket(100)) == (17, 6, 24)
    scores = np.linspace(-130, 130, 521)
    edges = np.linspace(-100, 100, 26)
    expected = np.clip(np.digitize(np.clip(scores, -100, 100), edges) - 1, 0, 24)
    assert hop_bucket(torch.tensor(scores)).tolist() == expected.tolist()


def test_hop_text_round_trip():
    assert format_hop(0.375) == "<score>+37.5%</score>"
    assert format_hop(-0.5) == "<score>-50.0%</score>"
    assert parse_hop("I think <score>+37.5%</score>") == pytest.approx(0.375)
    assert parse_hop("<score>-150%</score>") == -1.0
    assert parse_hop("<score>0%</score>") == 0.0
    assert parse_hop("no score") is None


def test_progress_from_hops_spec_and_modes():
    assert progress_from_hops([0.5, 0.5, -0.5]).tolist() == pytest.approx([0.5, 0.75, 0.375])
    assert progress_from_hops([0.2, -0.3], mode="forward").tolist() == pytest.approx([0.2, -0.3])
    assert progress_from_hops([-0.8, -0.1, 0.0], mode="backward").tolist() == pytest.approx([0.2, 0.9, 1.0])
    assert progress_from_hops([1.7, -2.0]).tolist() == pytest.approx([1.0, 0.0])  # scores clipped to [-1, 1]
    with pytest.raises(ValueError, match="mode"):
        progress_from_hops([0.1], mode="sideways")


def test_incremental_progress_closed_forms_and_batch():
    rng = np.random.default_rng(0)
    gains = rng.uniform(0, 1, size=(4, 7))
    p = progress_from_hops(torch.tensor(gains))
    # only gains: 1 - p_t = prod_{k <= t} (1 - h_k)
    assert p.numpy() == pytest.approx(1 - np.cumprod(1 - gains, axis=1))
    losses = -rng.uniform(0, 1, size=7)
    q = progress_from_hops(torch.tensor(np.concatenate([[0.6], losses])))
    # only losses after p_0: p_t = p_0 * prod (1 + h_k)
    assert q.numpy()[1:] == pytest.approx(0.6 * np.cumprod(1 + losses))
    mixed = torch.tensor(rng.uniform(-1, 1, size=(3, 5)))
    batch = progress_from_hops(mixed)
    for row in range(3):
        assert batch[row].tolist() == pytest.approx(progress_from_hops(mixed[row]).tolist())
    # p stays in [0, 1] once p_0 = h_0 is; a negative first score gives negative progress (as released)
    start_ok = progress_from_hops(torch.cat([mixed[:, :1].abs(), mixed[:, 1:]], dim=1))
    assert ((start_ok >= 0) & (start_ok <= 1)).all()
    assert progress_from_hops([-0.5, 0.5]).tolist() == pytest.approx([-0.5, 0.25])


def test_fuse_progress():
    inc, fwd, bwd = torch.tensor([0.1, 0.5]), torch.tensor([0.3, 0.9]), torch.tensor([0.2, 0.4])
    assert fuse_progress(inc, fwd, bwd).tolist() == pytest.approx([0.2, 0.6])
    assert fuse_progress(inc, fwd, bwd, op="median").tolist() == pytest.approx([0.2, 0.5])
    four = [torch.tensor(np.random.default_rng(k).uniform(size=6)) for k in range(4)]
    assert fuse_progress(*four, op="median").numpy() == pytest.approx(np.median(np.stack(four), axis=0))
    assert fuse_progress(inc, op="median").tolist() == pytest.approx(inc.tolist())
    with pytest.raises(ValueError):
        fuse_progress()
    with pytest.raises(ValueError, match="op"):
        fuse_progress(inc, op="max")
