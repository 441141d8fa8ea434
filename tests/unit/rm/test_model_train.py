"""Training a reward model on a tiny random Llama: it learns an easy generated preference set in seconds, and
a saved model scores the same through every route (RewardModel, reward components, reward_model_reward, and a
plain unpadded forward pass of the saved HF classifier)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from polyreward.config import ConfigError
from polyreward.rewards import RewardSet, reward_model_reward
from polyreward.rewards.judges import clear_judge_cache
from polyreward.rm import (
    RewardModel,
    RMConfig,
    directional_reward,
    reward_components,
    reward_functions,
    sentiment_pairs,
    train_reward_model,
)
from polyreward.rm.data import SENTIMENT_WORDS
from polyreward.rm.train import ensemble_strength, label_tensors, score_pairs
from tests.tiny_models import llama_config, word_tokenizer

PROMPTS = ["review of hotel", "review of cafe", "review of phone"]
COMPLETIONS = ["good great food", "the room was awful and dirty", "it was fine"]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    tok = word_tokenizer(SENTIMENT_WORDS)
    path = tmp_path_factory.mktemp("tiny-backbone")
    LlamaForCausalLM(llama_config(len(tok))).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _config(backbone, out, **extra) -> RMConfig:
    base = dict(
        model=str(backbone),
        synthetic_size=256,
        eval_data="synthetic",
        epochs=3,
        batch_size=16,
        learning_rate=3e-3,
        freeze_embeddings=False,
        threads=1,
        output_dir=str(out),
    )
    return RMConfig(**{**base, **extra})


@pytest.fixture(scope="module")
def trained(backbone, tmp_path_factory):
    """One two-head run (sentiment decides the pairs, brevity labels the same pairs)."""
    out = tmp_path_factory.mktemp("rm-run")
    run = train_reward_model(_config(backbone, out, objectives=["sentiment", "brevity"]), progress=False)
    yield run
    clear_judge_cache()


def test_training_reaches_high_held_out_accuracy(trained):
    result = json.loads((trained / "eval.json").read_text())
    assert result["held_out_pairs"] == 256
    assert result["eval/accuracy/sentiment"] >= 0.85
    assert result["eval/accuracy/brevity"] >= 0.7  # the chance level is 0.5
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert {"loss/rm", "loss/contrastive", "rm/accuracy", "rm/delta_mean", "charts/epoch"} <= set(records[0])
    evals = [r for r in records if "eval/accuracy/sentiment" in r]
    assert len(evals) == 3  # one per epoch
    assert records[-2]["loss/rm"] < records[0]["loss/rm"]


def test_untrained_heads_are_near_chance(backbone):
    held_out = sentiment_pairs(256, seed=99).pairs
    model = RewardModel.from_backbone(backbone, ("sentiment",), seed=0)
    labels, _known = label_tensors(held_out.pairs)
    delta = score_pairs(model, held_out.pairs, 64, 32)
    assert 0.3 < float(((delta > 0) == (labels > 0.5)).float().mean()) < 0.7


def test_saved_model_scores_the_same_through_every_route(trained):
    path = trained / "model"
    loaded = RewardModel.load(path)
    assert loaded.objectives == ("sentiment", "brevity")
    scores = loaded.score(PROMPTS, COMPLETIONS)  # [3, 2], right-padded batch
    # independent: the saved HF classifier on each text alone (no padding, HF's own pooling)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    hf = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    for i, (p, c) in enumerate(zip(PROMPTS, COMPLETIONS, strict=True)):
        ids = torch.tensor([tok(f"{p}\n\n{c}")["input_ids"]])
        with torch.no_grad():
            assert hf(input_ids=ids).logits[0].tolist() == pytest.approx(scores[i].tolist(), abs=1e-5)
    fns = reward_functions(path)
    assert [f.__name__ for f in fns] == ["sentiment", "brevity"]
    for k, fn in enumerate(fns):
        assert fn(PROMPTS, COMPLETIONS) == pytest.approx(scores[:, k].tolist(), abs=1e-5)
        via_judges = reward_model_reward(str(path), label=loaded.objectives[k])
        assert via_judges(PROMPTS, COMPLETIONS) == pytest.approx(scores[:, k].tolist(), abs=1e-5)


def test_heads_as_reward_components_in_a_reward_set(trained):
    components = reward_components(trained / "model", prefix="rm_")
    scored = RewardSet(components).score(PROMPTS, COMPLETIONS, group_size=3)
    assert tuple(scored.batch.names) == ("rm_sentiment", "rm_brevity")
    expected = RewardModel.load(trained / "model").score(PROMPTS, COMPLETIONS)
    got = torch.as_tensor(scored.batch.rewards)
    assert got.flatten().tolist() == pytest.approx(expected.flatten().tolist(), abs=1e-5)
    with pytest.raises(ValueError, match="not heads"):
        reward_functions(trained / "model", ["helpful"])


def test_directional_reward_is_unit_vector_combination(trained):
    model = RewardModel.load(trained / "model")
    r = model.score(PROMPTS, COMPLETIONS)
    theta = math.radians(30)
    fn = directional_reward(model, [math.cos(theta), math.sin(theta)], name="dpa30")
    expected = [math.cos(theta) * a + math.sin(theta) * b for a, b in r.tolist()]
    assert fn.__name__ == "dpa30"
    assert fn(PROMPTS, COMPLETIONS) == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="one weight per head"):
        directional_reward(model, [1.0])


def test_ensemble_strength_finds_the_flipped_pairs(backbone, tmp_path):
    config = _config(backbone, tmp_path, ensemble_size=2, ensemble_epochs=2, denoise="flip", epochs=1)
    generated = sentiment_pairs(256, flip_fraction=0.3, seed=5)
    diffs, mu, sigma = ensemble_strength(config, generated.pairs)
    assert diffs.shape == (2, 256, 1) and sigma.shape == (256, 1)
    suspect = (mu[:, 0] < 0).tolist()
    flipped = generated.flipped
    hits = sum(s and f for s, f in zip(suspect, flipped, strict=True))
    # most flagged pairs are real flips (30% would be chance), and most flips are flagged
    assert hits / max(sum(suspect), 1) > 0.6
    assert hits / sum(flipped) > 0.5


def test_config_invariants_are_checked():
    with pytest.raises(ConfigError, match="ensemble_size >= 1"):
        RMConfig(margin="strength")
    with pytest.raises(ConfigError, match="synthetic_flip_fraction"):
        RMConfig(synthetic_flip_fraction=1.5)
