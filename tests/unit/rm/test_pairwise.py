"""The pairwise judge (Pairwise-RL, arXiv 2504.04950) on a tiny random Llama: the label-token loss and the
consistency metrics by hand, both orderings against one ordering, and the saved judge served by
``judge_reward(mode="pairwise")`` checked against a plain unpadded forward pass."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from polyreward.config import ConfigError
from polyreward.rewards import judge_reward
from polyreward.rewards.judges import ANSWER_PREFIXES, TEMPLATES, clear_judge_cache
from polyreward.rm import RewardModel, RMConfig, sentiment_pairs, train_reward_model
from polyreward.rm.data import SENTIMENT_WORDS
from polyreward.rm.losses import label_token_loss, position_consistency
from tests.tiny_models import llama_config, word_tokenizer


def test_label_token_loss_sums_spellings_over_the_full_vocabulary():
    logits = torch.tensor([[1.0, 2.0, 0.0, 0.5], [0.0, 0.0, 3.0, 0.0]])
    # label 0 = ids {0, 3}, label 1 = id {2}; row 0 wants label 0, row 1 wants label 1
    z0 = math.exp(1) + math.exp(2) + 1 + math.exp(0.5)
    z1 = 3 + math.exp(3)
    expected = -(math.log((math.exp(1) + math.exp(0.5)) / z0) + math.log(math.exp(3) / z1)) / 2
    got = label_token_loss(logits, [[0, 3], [2]], torch.tensor([0, 1]))
    assert float(got) == pytest.approx(expected, abs=1e-6)


def test_position_consistency_counts_same_choice_in_both_orders():
    # pair 0: right both times; 1: always says "A" (picks chosen first, rejected second); 2: wrong both times
    p_first, p_second = torch.tensor([0.9, 0.8, 0.3]), torch.tensor([0.7, 0.1, 0.4])
    m = position_consistency(p_first, p_second)
    assert float(m["accuracy"]) == pytest.approx(3 / 6)
    assert float(m["consistency"]) == pytest.approx(2 / 3)  # pairs 0 and 2 pick one response in both orders
    assert float(m["win_accuracy"]) == pytest.approx(1 / 3)  # means 0.8, 0.45, 0.35


@pytest.fixture(scope="module")
def judge_backbone(tmp_path_factory):
    """A tiny random Llama whose word vocabulary covers the judge template, the reviews and the labels."""
    from transformers import LlamaForCausalLM

    template_words = re.findall(r"\w+|[^\w\s]+", TEMPLATES["pairwise"] + " " + ANSWER_PREFIXES["pairwise"])
    tok = word_tokenizer([*SENTIMENT_WORDS, *template_words, "A", "B"])
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("judge-backbone")
    LlamaForCausalLM(llama_config(len(tok))).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _run(backbone, out, both: bool):
    config = RMConfig(
        kind="pairwise",
        both_orderings=both,
        model=str(backbone),
        synthetic_size=128,
        eval_data="synthetic",
        epochs=6,
        batch_size=16,
        learning_rate=3e-3,
        freeze_embeddings=False,
        threads=1,
        output_dir=str(out),
    )
    return train_reward_model(config, progress=False)


@pytest.fixture(scope="module")
def runs(judge_backbone, tmp_path_factory):
    both = _run(judge_backbone, tmp_path_factory.mktemp("pw-both"), True)
    one = _run(judge_backbone, tmp_path_factory.mktemp("pw-one"), False)
    yield both, one
    clear_judge_cache()


def test_both_orderings_are_more_position_consistent(runs):
    both, one = (json.loads((r / "eval.json").read_text()) for r in runs)
    assert both["held_out_pairs"] == one["held_out_pairs"] == 128
    # always naming one slot gives accuracy 0.5 and consistency 0: the judge must read the responses
    assert both["eval/accuracy"] > 0.65, both
    assert both["eval/consistency"] > one["eval/consistency"] + 0.1, (both, one)
    records = [json.loads(line) for line in (runs[0] / "metrics.jsonl").read_text().splitlines()]
    assert {"loss/rm", "rm/accuracy", "charts/epoch"} <= set(records[0])
    assert len([r for r in records if "eval/consistency" in r]) == 6


def test_saved_judge_scores_through_judge_reward(runs):
    model_dir = runs[0] / "model"
    held_out = sentiment_pairs(128, seed=1_000_003).pairs.pairs  # eval_data='synthetic' with seed 0
    prompts = [p.prompt for p in held_out]
    judge = judge_reward(str(model_dir), mode="pairwise", name="trained_judge", device="cpu")
    wins = judge(prompts, [p.chosen for p in held_out], reference=[p.rejected for p in held_out])
    result = json.loads((runs[0] / "eval.json").read_text())
    assert sum(w > 0.5 for w in wins) / len(wins) == pytest.approx(result["eval/win_accuracy"])
    # independent: each judge input alone through the saved HF causal LM, softmax over the A / B tokens
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    a_id, b_id = tok.convert_tokens_to_ids(["A", "B"])

    def p_slot(prompt, a, b, slot):
        text = TEMPLATES["pairwise"].format(prompt=prompt, response=a, response_a=a, response_b=b)
        ids = torch.tensor([tok(text + "\n" + ANSWER_PREFIXES["pairwise"])["input_ids"]])
        with torch.no_grad():
            logits = hf(input_ids=ids).logits[0, -1, [a_id, b_id]]
        return float(logits.softmax(-1)[slot])

    for p, w in list(zip(held_out, wins, strict=True))[:4]:
        by_hand = (p_slot(p.prompt, p.chosen, p.rejected, 0) + p_slot(p.prompt, p.rejected, p.chosen, 1)) / 2
        assert w == pytest.approx(by_hand, abs=1e-5)
    with pytest.raises(ValueError, match="pairwise judge"):
        RewardModel.load(model_dir)


def test_pairwise_config_rejects_bt_only_keys():
    with pytest.raises(ConfigError, match="kind='pairwise'.*ensemble_size"):
        RMConfig(kind="pairwise", ensemble_size=2)
    with pytest.raises(ConfigError, match="objectives"):
        RMConfig(kind="pairwise", objectives=["a", "b"])


def test_rm_eval_reads_a_pairwise_judge(runs, capsys):
    from polyreward.cli import main

    result = json.loads((runs[0] / "eval.json").read_text())
    capsys.readouterr()
    # the held-out pairs of training: 128 synthetic pairs with seed 1_000_003
    assert main(["rm", "eval", str(runs[0] / "model"), "synthetic", "--size", "128", "--seed", "1000003"]) == 0
    out = dict(line.split(": ") for line in capsys.readouterr().out.splitlines())
    assert out["pairs"] == "128"
    assert float(out["eval/accuracy"]) == pytest.approx(result["eval/accuracy"])
    assert float(out["eval/consistency"]) == pytest.approx(result["eval/consistency"])
