"""ExIt task buffer on the tiny model: the buffer fills, its rows are trained on, resume is exact."""

import json

import pytest

from polyreward.config import ConfigError
from polyreward.lm.model import load_policy
from polyreward.lm.trainer import Trainer

from .tiny_lm import ROWS, is_short, make_tiny_model, says_yes, tiny_config

SPEC = {"kind": "exit", "params": {"reward": "says_yes", "mix": 0.5, "max_depth": 2, "instruction": "please say"}}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _trainer(model_dir, run_dir, steps, save_every=0):
    config = tiny_config(run_dir, model_dir, steps=steps, save_every=save_every, controllers=[SPEC], max_new_tokens=3)
    model, tokenizer = load_policy(config.model)
    return Trainer(model, tokenizer, [says_yes, is_short], ROWS, config)


def _records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in lines]


def test_buffer_fills_and_its_rows_are_trained_on(model_dir, tmp_path):
    trainer = _trainer(model_dir, tmp_path / "run", steps=5)
    trainer.train(progress=False)
    records = _records(tmp_path / "run")
    assert records[0]["exit/from_buffer"] == 0.0  # nothing to replay before the first group
    assert any(r["exit/buffer_size"] > 0 for r in records)
    replayed = [r for r in records if r["exit/from_buffer"] > 0]
    assert replayed and all(r["exit/mean_depth"] > 0 for r in replayed)
    assert all("loss/policy" in r for r in replayed)  # those steps trained on the self-iteration rows
    buffer = trainer.controllers.items[0].buffer
    assert all(1 <= e["depth"] <= 2 and e["score"] > 0 for e in buffer)


def test_stop_and_resume_equals_an_uninterrupted_run(model_dir, tmp_path):
    _trainer(model_dir, tmp_path / "straight", steps=4, save_every=1).train(progress=False)
    _trainer(model_dir, tmp_path / "split", steps=2, save_every=1).train(progress=False)
    resumed = _trainer(model_dir, tmp_path / "split", steps=4, save_every=1)
    resumed.train(resume=True, progress=False)
    straight = _records(tmp_path / "straight")
    assert sum(r["exit/from_buffer"] for r in straight[2:]) > 0  # the resumed half replays saved instances
    assert _records(tmp_path / "split") == straight


def test_chat_prompts_get_the_previous_attempt_as_a_turn(model_dir, tmp_path):
    rows = [{"prompt": [{"role": "user", "content": row["prompt"]}], "topic": row["topic"]} for row in ROWS]
    spec = {"kind": "exit", "params": {"mix": 1.0, "instruction": "please say"}}  # return: the weighted sum
    config = tiny_config(tmp_path / "run", model_dir, steps=4, save_every=0, controllers=[spec], max_new_tokens=3)
    model, tokenizer = load_policy(config.model)
    Trainer(model, tokenizer, [says_yes, is_short], rows, config).train(progress=False)
    records = _records(tmp_path / "run")
    replayed = [i for i, r in enumerate(records) if r["exit/from_buffer"] == 2.0]  # mix 1: every slot replayed
    assert replayed
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    logged = [s["prompt"] for s in samples if s["step"] == replayed[0]]
    assert logged and all("'role': 'assistant'" in p and "'content': 'please say'" in p for p in logged)


def test_config_errors_name_the_exit_field(model_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"controllers\[0\] \(exit\): mix: a probability in \[0, 1\]"):
        tiny_config(tmp_path, model_dir, controllers=[{"kind": "exit", "params": {"mix": 2}}])
