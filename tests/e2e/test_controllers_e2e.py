"""Each controller wired through TrainConfig on the tiny model: 2-3 real steps, metrics present."""

import json

import pytest

from polyreward.config import ConfigError
from polyreward.lm.model import load_policy
from polyreward.lm.trainer import Trainer

from .tiny_lm import WORDS, is_short, make_tiny_model, says_yes, tiny_config

ROWS = [{"prompt": f"say {w} please", "topic": w, "task": "easy" if i % 2 else "hard"} for i, w in enumerate(WORDS)]


def word_count(prompts, completions, **kwargs):
    """Stands in for an execution time: seconds proportional to the completion's words."""
    return [float(len(c.split())) for c in completions]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _run(model_dir, run_dir, controllers, rewards=(says_yes, is_short), steps=3, **overrides):
    config = tiny_config(run_dir, model_dir, steps=steps, save_every=0, controllers=controllers, **overrides)
    model, tokenizer = load_policy(config.model)
    trainer = Trainer(model, tokenizer, list(rewards), ROWS, config)
    run = trainer.train(progress=False)
    return trainer, [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_bstar_picks_a_grid_temperature_and_samples_with_it(model_dir, tmp_path):
    spec = {
        "kind": "bstar",
        "params": {
            "correct": "is_short",
            "temperatures": [0.5, 1.5],
            "every": 2,
            "probe_prompts": 2,
            "probe_samples": 4,
            "n_star": 2,
        },
    }
    _, records = _run(model_dir, tmp_path / "run", [spec])
    for r in records:
        assert r["bstar/temperature"] in (0.5, 1.5)
        assert -1.0 <= r["bstar/threshold"] <= 1.0 and 0.0 <= r["bstar/balance"] <= 1.0


def test_learning_progress_sampler_runs_and_tracks_tasks(model_dir, tmp_path):
    spec = {"kind": "learning_progress", "params": {"reward": "says_yes", "task_column": "task"}}
    trainer, records = _run(model_dir, tmp_path / "run", [spec])
    assert "curriculum/p_max" in records[-1]
    assert set(trainer.controllers.items[0].ema) <= {"easy", "hard"} and trainer.controllers.items[0].ema


def test_value_resample_replaces_rows_known_to_be_flat(model_dir, tmp_path):
    # is_short is 1 for every completion of <= 3 words: with 2-token completions every group is flat
    spec = {"kind": "value_resample", "params": {"reward": "is_short"}}
    trainer, records = _run(model_dir, tmp_path / "run", [spec], max_new_tokens=2, steps=6, prompts_per_step=4)
    assert all(v[0] == 0.0 for v in trainer.controllers.items[0].stats.values())
    assert sum(r["vspo/replaced"] for r in records) > 0


def test_variance_filter_probes_once_and_trains_on_kept_rows(model_dir, tmp_path):
    spec = {"kind": "variance_filter", "params": {"reward": "says_yes", "runs": 4, "temperature": 2.0}}
    trainer, records = _run(model_dir, tmp_path / "run", [spec])
    kept = trainer.controllers.items[0].kept
    assert records[0]["select/kept"] == len(kept) and records[0]["select/probed"] == len(ROWS)
    assert "select/kept" not in records[1]


def test_staged_tasks_and_alternating_rewards(model_dir, tmp_path):
    specs = [
        {"kind": "staged_tasks", "params": {"stages": [{"until": 2, "weights": {"easy": 1}}, {"weights": {"hard": 1}}]}},
        {
            "kind": "alternating_rewards",
            "params": {
                "window": 2,
                "first": 1,
                "a": {"says_yes": 1.0, "is_short": 0.0},
                "b": {"says_yes": 0.0, "is_short": 1.0},
            },
        },
    ]
    _, records = _run(model_dir, tmp_path / "run", specs, steps=3)
    assert [r["curriculum/stage"] for r in records] == [0.0, 0.0, 1.0]
    assert [r["reward/says_yes/weight"] for r in records] == [1.0, 0.0, 1.0]
    assert [r["reward/is_short/weight"] for r in records] == [0.0, 1.0, 0.0]


def test_duration_weighting_scales_advantages(model_dir, tmp_path):
    from polyreward.rewards import RewardComponent

    rewards = (says_yes, RewardComponent(word_count, weight=0.0))
    spec = {"kind": "duration_weighting", "params": {"duration": "word_count"}}
    _, records = _run(model_dir, tmp_path / "run", [spec], rewards=rewards, steps=2)
    assert "loss/policy" in records[-1]


def test_dpa_conditions_prompts_and_keeps_one_sample_per_group(model_dir, tmp_path):
    spec = {"kind": "dpa", "params": {"objectives": ["says_yes", "is_short"], "angles": [10, 80]}}
    _, records = _run(model_dir, tmp_path / "run", [spec], steps=2)
    assert 10 <= records[0]["dpa/angle_mean"] <= 80
    # advantage 1 on exactly one of the 4 samples of each group, 0 elsewhere
    assert records[0]["adv/mean"] == 0.25 and records[0]["adv/abs_mean"] == 0.25
    samples = (tmp_path / "run" / "samples.jsonl").read_text()
    assert "Preference: says_yes=" in samples


def test_config_errors_name_the_controller(model_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"controllers\[0\]: unknown kind 'bstr'"):
        tiny_config(tmp_path, model_dir, controllers=[{"kind": "bstr"}])
    with pytest.raises(ConfigError, match=r"controllers\[0\] \(learning_progress\): unknown params \['rate'\]"):
        tiny_config(tmp_path, model_dir, controllers=[{"kind": "learning_progress", "params": {"reward": "a", "rate": 1}}])
    config = tiny_config(tmp_path / "r", model_dir, controllers=[{"kind": "bstar", "params": {"correct": "nope"}}])
    model, tokenizer = load_policy(config.model)
    with pytest.raises(ValueError, match="bstar.correct: no reward named 'nope'"):
        Trainer(model, tokenizer, [says_yes, is_short], ROWS, config)


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "learning_progress", "params": {"reward": "says_yes", "task_column": "task"}},
        {"kind": "value_resample", "params": {"reward": "is_short"}},
    ],
    ids=["learning_progress", "value_resample"],
)
def test_stateful_controller_resumes_exactly(model_dir, tmp_path, spec):
    """A run stopped at a checkpoint and resumed equals an uninterrupted one: the controller's state
    (EMAs, value statistics, its sampling generator) travels in the checkpoint."""

    def trainer(run_dir, steps):
        config = tiny_config(run_dir, model_dir, steps=steps, save_every=1, controllers=[spec], max_new_tokens=3)
        model, tokenizer = load_policy(config.model)
        return Trainer(model, tokenizer, [says_yes, is_short], ROWS, config)

    trainer(tmp_path / "straight", 4).train(progress=False)
    trainer(tmp_path / "split", 2).train(progress=False)
    trainer(tmp_path / "split", 4).train(resume=True, progress=False)

    def records(run):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in lines]

    assert records(tmp_path / "split") == records(tmp_path / "straight")
