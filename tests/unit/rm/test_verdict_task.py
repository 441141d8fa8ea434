"""The verdict task (UnifiedReward-Think / BR-RM style judging with GRPO): rows in both orderings, the verdict
parser, and two steps of the language-model trainer on ``task: verdict:synthetic`` with a tiny model, its logged
rewards checked against labels worked out by hand from the logged prompts."""

from __future__ import annotations

import json
import re

import pytest
import torch

from polyreward.lm.config import TrainConfig
from polyreward.lm.run import train
from polyreward.rm.data import NEGATIVE, POSITIVE, PreferencePair
from polyreward.rm.verdict_task import parse_verdict, verdict_correct, verdict_format, verdict_rows, verdict_task
from tests.tiny_models import word_tokenizer

CHAT = "{% for m in messages %}{{ m['content'] }} {% endfor %}{% if add_generation_prompt %}answer {% endif %}"


def test_rows_show_every_pair_in_both_orders():
    rows = verdict_rows([PreferencePair("review of cafe", "good food", "bad food")])
    assert [r["label"] for r in rows] == ["A", "B"]
    first, second = rows[0]["prompt"], rows[1]["prompt"]
    assert "[Response A]\ngood food\n" in first and "[Response B]\nbad food\n" in first
    assert "[Response A]\nbad food\n" in second and "[Response B]\ngood food\n" in second
    assert first.endswith("Reply with A or B only.")
    think = verdict_rows([PreferencePair("q", "x", "y")], reasoning=True)[0]["prompt"]
    assert think.endswith("inside <answer></answer>.") and "Reply with A or B only." not in think


@pytest.mark.parametrize(
    ("text", "verdict"),
    [("A", "A"), (" B. ", "B"), ("(A)", "A"), ("<think>B looks off</think><answer>A</answer>", "A"), ("A B", None),
     ("The answer is B", None), ("", None), ("<answer>C</answer>", None)],
)  # fmt: skip
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def test_rewards_correct_and_format():
    completions = ["A", "B", "maybe", "<think>short is fine</think> <answer>B</answer>"]
    assert verdict_correct(None, completions, label=["A", "A", "B", None]) == [1.0, 0.0, 0.0, None]
    assert verdict_format(False)(None, completions) == [1.0, 1.0, 0.0, 0.0]
    assert verdict_format(True)(None, completions) == [0.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="'label' column"):
        verdict_correct(None, completions)
    rows, rewards = verdict_task("verdict_think:synthetic", 10, 0)
    assert len(rows) == 10 and [r.__name__ for r in rewards] == ["verdict_correct", "verdict_format"]
    with pytest.raises(ValueError, match="verdict:<pairs file"):
        verdict_task("verdict:", 10, 0)


def _sentiment(text: str) -> int:
    return sum(w in POSITIVE for w in text.split()) - sum(w in NEGATIVE for w in text.split())


def _label_by_hand(prompt: str) -> str:
    a = re.search(r"\[Response A\]\n(.*?)\n\[End of response A\]", prompt).group(1)
    b = re.search(r"\[Response B\]\n(.*?)\n\[End of response B\]", prompt).group(1)
    assert _sentiment(a) != _sentiment(b)
    return "A" if _sentiment(a) > _sentiment(b) else "B"


def test_two_trainer_steps_on_the_verdict_task(tmp_path):
    from transformers import LlamaForCausalLM

    from tests.tiny_models import llama_config

    tok = word_tokenizer(["answer", "A", "B", "good", "bad"], chat_template=CHAT)
    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    LlamaForCausalLM(llama_config(len(tok), max_position_embeddings=256)).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    config = TrainConfig(
        model=str(model_dir),
        task="verdict:synthetic",
        task_size=16,
        output_dir=str(tmp_path / "run"),
        prompts_per_step=4,
        group_size=4,
        max_new_tokens=1,  # one token: "A", "B" or something else
        steps=2,
        save_every=0,
        learning_rate=1e-3,
        threads=1,
        samples_to_log=16,
        seed=1,
    )
    run = train(config, progress=False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1]
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 32  # every completion of both steps
    by_hand = [float(s["completion"].strip() == _label_by_hand(s["prompt"])) for s in samples]
    assert [s["rewards"]["verdict_correct"] for s in samples] == by_hand
    assert 0.0 in by_hand and 1.0 in by_hand  # the check covers right and wrong verdicts
    for step, record in enumerate(records):
        assert record["reward/verdict_correct/mean"] == pytest.approx(sum(by_hand[16 * step : 16 * step + 16]) / 16)
        assert "reward/verdict_format/mean" in record
