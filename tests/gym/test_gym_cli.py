"""``polyreward train / eval / report`` on gym configs, and every example config under configs/gym."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyreward.cli import main
from polyreward.config import ConfigError, load_config, trainer_kind
from polyreward.gym import GymConfig, make_vec_env
from polyreward.report import load_run
from polyreward.runlog import read_metrics

CONFIGS = sorted((Path(__file__).parents[2] / "configs" / "gym").glob("*.yaml"))
TINY = ["--set", "num_envs=2", "--set", "num_steps=32", "--set", "minibatches=2", "--set", "epochs=1", "--no-progress"]


def test_train_resume_eval_and_report_from_the_command_line(tmp_path, capsys):
    config = CONFIGS[[c.name for c in CONFIGS].index("deep-sea-treasure.yaml")]
    run = tmp_path / "dst"
    args = ["train", str(config), *TINY, "--set", f"output_dir={run}", "--set", "save_every=1"]
    assert main([*args, "--set", "total_steps=128"]) == 0
    assert [r["step"] for r in read_metrics(run)] == [64, 128]
    assert main([*args, "--set", "total_steps=192"]) == 2  # the run exists: --resume or another directory
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--set", "total_steps=192", "--resume"]) == 0
    records = read_metrics(run)
    assert [r["step"] for r in records] == [64, 128, 192]
    # deep-sea-treasure pays time = -1 on every step: the per-step mean is exactly -1
    assert all(r["reward/time/mean"] == -1.0 for r in records)
    assert all(abs(r["diag/treasure/adv_share"] + r["diag/time/adv_share"] - 1) < 1e-6 for r in records)

    report = run / "report" / "index.html"
    assert report.is_file() and {"rewards.png", "returns.png", "losses.png"} <= {p.name for p in report.parent.iterdir()}
    html = report.read_text()
    assert "deep-sea-treasure-v0" in html and "ppo (critic multi, scalarized)" in html and "Sample completions" not in html
    assert load_run(run).reward_names == ["treasure", "time"]

    capsys.readouterr()
    assert main(["eval", str(config), "--run", str(run), "--episodes", "3"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["episodes"] == 3 and result["step"] == 192
    assert result["return/weighted"] == pytest.approx(result["return/treasure"] + result["return/time"])
    assert "return/time:" in capsys.readouterr().out


def test_trainer_key_selects_the_config_and_is_checked(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("trainer: gym\nenv_id: four-room-v0\n")
    assert trainer_kind(path) == "gym" and trainer_kind(None) == "lm"
    assert trainer_kind(path, ["trainer=lm"]) == "lm"
    assert load_config(GymConfig, path).env_id == "four-room-v0"
    with pytest.raises(ConfigError, match=r"trainer='ppo' is not one of \['lm', 'gym', 'dual_play', 'complementary'\]"):
        trainer_kind(path, ["trainer=ppo"])
    path.write_text("trainer: gym\nenv_idd: four-room-v0\n")
    with pytest.raises(ConfigError, match=r"unknown key 'env_idd'; did you mean \['env_id'\]"):
        load_config(GymConfig, path)


def test_help_config_lists_the_gym_keys(capsys):
    assert main(["train", "--help-config", "--set", "trainer=gym"]) == 0
    out = capsys.readouterr().out
    assert "critic_norm (default 'scalarized')" in out and "env_id" in out


def test_unknown_environment_from_the_command_line_names_it(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(f"trainer: gym\nenv_id: deep-sea-treasur-v0\noutput_dir: {tmp_path / 'run'}\n")
    assert main(["train", str(path), "--no-progress"]) == 2
    assert "unknown environment 'deep-sea-treasur-v0'; did you mean ['deep-sea-treasure-v0'," in capsys.readouterr().err


@pytest.mark.parametrize("path", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_example_config_builds_and_trains_one_update(tmp_path, path):
    config = load_config(GymConfig, path, ["num_envs=2", "num_steps=16", "minibatches=1", "epochs=1"])
    env = make_vec_env(config)
    assert env.names and env.obs_dim > 0
    env.close()
    assert main(["train", str(path), *TINY, "--set", "total_steps=64", "--set", f"output_dir={tmp_path}"]) == 0
    assert [r["step"] for r in read_metrics(tmp_path)] == [64]
