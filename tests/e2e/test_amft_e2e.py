"""AMFT through the LM trainer on the tiny model: μ moves and is logged, μ = 1 is pure SFT, μ = 0 is
the plain trainer bit for bit, and a resumed run restores μ."""

import dataclasses
import json

import pytest
import torch

from polyreward.lm.loss import token_logprobs
from polyreward.lm.model import load_policy
from polyreward.lm.rollout import demonstration_rollout
from polyreward.lm.trainer import Trainer

from .tiny_lm import ROWS, is_short, make_tiny_model, says_yes, tiny_config

DEMO = "yes {topic}"  # every row's demonstration: "yes" then the row's word, then EOS


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _amft(**params):
    return [{"kind": "amft", "params": {"demonstration": DEMO, **params}}]


def _trainer(model_dir, run_dir, controllers, rewards=(says_yes, is_short), **overrides):
    config = tiny_config(run_dir, model_dir, controllers=controllers, **{"save_every": 0, **overrides})
    model, tokenizer = load_policy(config.model)
    return Trainer(model, tokenizer, list(rewards), ROWS, config)


def _records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in lines]


def _demo_nll(trainer) -> float:
    """Mean token NLL of every row's demonstration under the trainer's current policy."""
    demos = demonstration_rollout(trainer.tokenizer, [r["prompt"] for r in ROWS], [DEMO.format(**r) for r in ROWS])
    with torch.no_grad():
        logits = trainer._completion_logits(demos, torch.arange(demos.num_samples))
        logp = token_logprobs(logits, demos.completion_ids)
    return float(-(logp * demos.completion_mask).sum() / demos.completion_mask.sum())


def test_mu_moves_and_is_logged(model_dir, tmp_path):
    controllers = _amft(warmup_steps=1, meta_every=1, meta_lr=1.0, entropy_lr=0.05, validation_rows=3)
    _trainer(model_dir, tmp_path / "run", controllers, steps=3).train(progress=False)
    records = _records(tmp_path / "run")
    assert records[0]["amft/warmup"] == 1.0 and records[0]["amft/mu"] == 1.0  # warm-up: pure SFT
    assert all("loss/sft" in r and "loss/sft_validation" in r for r in records[1:])
    mus = [r["amft/mu"] for r in records[1:]]
    assert all(0.05 <= mu <= 0.95 for mu in mus) and mus[0] != 0.8 and mus[1] != mus[0]
    assert all(r["amft/meta_gradient"] != 0.0 for r in records[1:])


def test_mu_pinned_to_one_is_pure_sft_and_raises_demo_likelihood(model_dir, tmp_path):
    pinned = _amft(mu_init=1.0, mu_min=1.0, mu_max=1.0, warmup_steps=0)
    a = _trainer(model_dir, tmp_path / "a", pinned, steps=4)
    before = _demo_nll(a)
    a.train(progress=False)
    after = _demo_nll(a)
    assert after < before - 0.1, (before, after)
    # the RL loss has weight 0: other rewards (other advantages) give the same weights
    b = _trainer(model_dir, tmp_path / "b", pinned, rewards=(is_short,), steps=4)
    b.train(progress=False)
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_mu_pinned_to_zero_is_the_plain_trainer_bit_for_bit(model_dir, tmp_path):
    plain = _trainer(model_dir, tmp_path / "plain", [], steps=2)
    plain.train(progress=False)
    zero = _trainer(model_dir, tmp_path / "zero", _amft(mu_init=0.0, mu_min=0.0, mu_max=0.0, warmup_steps=0), steps=2)
    zero.train(progress=False)
    for (name, p), q in zip(plain.model.named_parameters(), zero.model.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert _records(tmp_path / "zero")[-1]["amft/mu"] == 0.0


def test_resume_restores_mu(model_dir, tmp_path):
    controllers = _amft(warmup_steps=1, meta_every=2, meta_lr=1.0, entropy_lr=0.05, validation_rows=3)
    straight = _trainer(model_dir, tmp_path / "straight", controllers, steps=4, save_every=1, max_new_tokens=3)
    straight.train(progress=False)
    _trainer(model_dir, tmp_path / "split", controllers, steps=2, save_every=1, max_new_tokens=3).train(progress=False)
    resumed = _trainer(model_dir, tmp_path / "split", controllers, steps=4, save_every=1, max_new_tokens=3)
    resumed.train(resume=True, progress=False)
    assert _records(tmp_path / "split") == _records(tmp_path / "straight")
    assert resumed.controllers.items[0].mu == straight.controllers.items[0].mu != 0.8


def _reference_nll(model, demos) -> float:
    """Token-mean NLL of the demos' completions, from one plain forward per unpadded prompt + completion."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(demos.num_samples):
            prompt = demos.prompt_ids[i][demos.prompt_mask[i]]
            completion = demos.completion_ids[i][demos.completion_mask[i]]
            logits = model(input_ids=torch.cat([prompt, completion])[None]).logits[0].float()
            logp = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
            total -= float(logp.gather(1, completion[:, None]).sum())
            count += len(completion)
    return total / count


def test_supervised_step_on_kept_samples_is_their_nll_and_lowers_it(model_dir, tmp_path):
    """Rejection-sampling fine-tuning: a filtered subset of a grouped rollout, one row per prompt."""
    trainer = _trainer(model_dir, tmp_path / "rft", [])
    rollout = trainer.rollout([r["prompt"] for r in ROWS[:3]], 4, 1.0)
    kept = dataclasses.replace(rollout.subset(torch.tensor([1, 6, 7, 11])), group_size=1)
    before = _reference_nll(trainer.model, kept)
    metrics = trainer.supervised_step(kept)
    assert metrics["loss/sft"] == pytest.approx(before, rel=1e-5)
    assert _reference_nll(trainer.model, kept) < before
