"""VPL pieces on a tiny random Llama: generated users with opposite preferences, the permutation-invariant
encoder, one training step's loss against the ELBO written out by hand, and save/load + reward function."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from polyreward.rm.data import (
    PreferenceDataError,
    brevity_reward,
    sentiment_reward,
    user_pairs,
    users_of,
    validate_rows,
)
from polyreward.rm.model import RewardModel
from polyreward.rm.vpl import VPLRewardModel, _user_batch, fit_vpl, user_accuracy, vpl_reward_function, vpl_step
from tests.unit.rm.test_model_train import backbone  # noqa: F401  (module-scoped fixture)


def test_user_types_label_shared_pairs_in_opposite_ways():
    generated = user_pairs(6, 10, seed=3)
    labels: dict[tuple[str, frozenset], set[str]] = {}
    for pair in generated.pairs.pairs:
        kind = generated.user_types[pair.user]
        reward = {"sentiment": sentiment_reward, "brevity": brevity_reward}[kind]
        c, r = reward([pair.prompt] * 2, [pair.chosen, pair.rejected])
        assert c > r  # each user chooses by its own objective
        labels.setdefault((pair.prompt, frozenset((pair.chosen, pair.rejected))), set()).add(f"{kind}:{pair.chosen}")
    # the pool is shared (20 pairs for 60 labels) and every pair is a conflict between the two objectives
    assert len(labels) <= 20
    both = [v for v in labels.values() if len({x.split(":")[0] for x in v}) == 2]
    assert both and all(len({x.split(":", 1)[1] for x in v}) == 2 for v in both)
    assert sorted(set(generated.user_types.values())) == ["brevity", "sentiment"]
    assert len(users_of(generated.pairs.pairs)) == 6


def test_user_column_is_validated():
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b", "user": "u1"}, {"prompt": "q", "chosen": "a", "rejected": "b"}]
    with pytest.raises(PreferenceDataError, match="row 1: 'user' \\(the user id\\) is missing"):
        validate_rows(rows, "f.jsonl", user_column="user")
    assert validate_rows(rows[:1], "f.jsonl", user_column="user").pairs[0].user == "u1"


@pytest.fixture(scope="module")
def vpl(backbone):  # noqa: F811
    return VPLRewardModel(RewardModel.from_backbone(backbone, ("reward",), seed=0), latent_dim=3)


def test_encoder_is_permutation_invariant_and_masks_padding(vpl):
    torch.manual_seed(0)
    fc, fr = torch.randn(2, 5, 32), torch.randn(2, 5, 32)
    mean, logvar = vpl.posterior(fc, fr)
    perm = torch.tensor([3, 0, 4, 1, 2])
    mean_p, logvar_p = vpl.posterior(fc[:, perm], fr[:, perm])
    assert torch.allclose(mean, mean_p, atol=1e-6) and torch.allclose(logvar, logvar_p, atol=1e-6)
    padded = torch.cat([fc, torch.randn(2, 2, 32)], 1), torch.cat([fr, torch.randn(2, 2, 32)], 1)
    mask = torch.tensor([[1] * 5 + [0, 0]] * 2)
    mean_m, _ = vpl.posterior(*padded, mask)
    assert torch.allclose(mean, mean_m, atol=1e-6)
    assert not torch.allclose(mean, vpl.posterior(fr, fc)[0])  # swapping chosen/rejected changes the user


def test_step_loss_is_minus_the_elbo_per_target_pair(vpl):
    generated = user_pairs(2, 6, seed=1)
    users = users_of(generated.pairs.pairs)
    context = [users[u][:3] for u in users]
    targets = [users[u][3:] for u in users]
    torch.manual_seed(7)
    loss, metrics = vpl_step(vpl, targets, context, beta=0.3, max_length=64)
    # by hand: the same posterior, the same eps (same seed), the ELBO of arXiv 2408.10075 per user
    fc, fr, gc, gr = _user_batch(vpl, targets, context, 64)
    mean, logvar = vpl.posterior(fc, fr)
    torch.manual_seed(7)
    z = mean + torch.exp(logvar / 2) * torch.randn_like(mean)
    delta = vpl.reward(gc, z) - vpl.reward(gr, z)
    kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(-1)
    elbo = F.logsigmoid(delta).sum(-1) - 0.3 * kl
    assert float(loss.detach()) == pytest.approx(float(-(elbo / 3).mean().detach()), abs=1e-5)
    assert metrics["loss/kl"] == pytest.approx(float(kl.mean()), abs=1e-5)


def test_save_load_and_reward_function_agree(vpl, tmp_path):
    generated = user_pairs(4, 8, seed=2)
    fit_vpl(vpl, generated.pairs.pairs, epochs=1, users_per_step=2, n_context=3, beta=0.1, learning_rate=1e-3)
    context = users_of(generated.pairs.pairs)["user1"][:3]
    prompts, completions = ["review of cafe", "review of hotel"], ["good food", "the room was dirty"]
    mean, _ = vpl.user_latent(context)
    expected = vpl.score(prompts, completions, mean)
    loaded = VPLRewardModel.load(vpl.save(tmp_path / "vpl"))
    assert loaded.score(prompts, completions, mean).tolist() == pytest.approx(expected.tolist(), abs=1e-5)
    fn = vpl_reward_function(tmp_path / "vpl", context, name="vpl_user1")
    assert fn.__name__ == "vpl_user1"
    assert fn(prompts, completions) == pytest.approx(expected.tolist(), abs=1e-5)
    accuracy = user_accuracy(loaded, generated.pairs.pairs, 3, 64)
    assert set(accuracy) == {"user0", "user1", "user2", "user3"} and all(0 <= a <= 1 for a in accuracy.values())


def test_vpl_beats_user_blind_bt_on_held_out_users(backbone, tmp_path):  # noqa: F811
    """Held-out users (new pairs, new users) of two opposite types: VPL reads each user's 8 context pairs; a
    user-blind Bradley-Terry model on the same frozen features cannot serve both types (~0.5 on conflict pairs).
    The test-scale recipe that works: frozen backbone, 64 users x 16 pairs from a pool of 256 distinct pairs."""
    import json

    from polyreward.rm import RMConfig, train_reward_model
    from polyreward.rm.data import PairSet
    from polyreward.rm.train import fit
    from polyreward.rm.vpl import accuracy_summary, load_user_data

    config = RMConfig(
        kind="vpl",
        model=str(backbone),
        freeze_backbone=True,
        synthetic_size=1024,
        epochs=50,
        batch_size=8,
        learning_rate=3e-3,
        max_length=64,
        threads=1,
        output_dir=str(tmp_path / "vpl"),
    )
    run = train_reward_model(config, progress=False)
    vpl = json.loads((run / "eval.json").read_text())
    train, held_out = load_user_data(config)
    assert train.user_types.keys().isdisjoint(held_out.user_types)
    # the baseline: one reward for everybody, trained on the same pairs (frozen backbone, linear head)
    bt = RewardModel.from_backbone(backbone, ("reward",), seed=0)
    bt.classifier.base_model.requires_grad_(False)
    bt_config = RMConfig(model=str(backbone), batch_size=16, learning_rate=3e-3, max_length=64)
    fit(bt, bt_config, train.pairs, epochs=3, seed=0)
    per_user = {}
    for user, own in users_of(held_out.pairs.pairs).items():
        rest = own[config.vpl_context_pairs :]  # the pairs VPL is scored on
        delta = bt.score([p.prompt for p in rest], [p.chosen for p in rest])[:, 0]
        delta = delta - bt.score([p.prompt for p in rest], [p.rejected for p in rest])[:, 0]
        per_user[user] = float((delta > 0).float().mean())
    blind = accuracy_summary(per_user, held_out.user_types)
    assert vpl["eval/accuracy/reward"] > blind["eval/accuracy/reward"] + 0.1, (vpl, blind)
    from polyreward.rm.train import eval_from_cli

    cli = eval_from_cli(str(run / "model"), "synthetic", "raise", 256, 7)  # new users of both types
    assert cli["users"] == 256 // (2 * config.vpl_context_pairs) and cli["eval/accuracy/reward"] > 0.6, cli
    assert min(vpl["eval/accuracy/sentiment"], vpl["eval/accuracy/brevity"]) > 0.6, vpl
    assert isinstance(train.pairs, PairSet)
