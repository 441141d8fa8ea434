"""``polyreward rm train`` / ``polyreward rm eval`` end to end on a tiny backbone and a JSONL file."""

from __future__ import annotations

import json

import pytest

from polyreward.cli import main
from polyreward.rm.data import sentiment_pairs
from tests.unit.rm.test_model_train import backbone  # noqa: F401  (module-scoped fixture)


def test_rm_train_then_eval_on_a_file(backbone, tmp_path, capsys):  # noqa: F811
    data = tmp_path / "pairs.jsonl"
    pairs = sentiment_pairs(96, seed=4).pairs.pairs
    data.write_text(
        "".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n" for p in pairs)
    )
    config = tmp_path / "rm.yaml"
    config.write_text(f"model: {backbone}\ntrain_data: {data}\nepochs: 2\nlearning_rate: 0.003\nthreads: 1\n")
    out = tmp_path / "run"
    assert main(["rm", "train", str(config), "--set", f"output_dir={out}", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["train_pairs"] == 86  # 10% held out
    assert main(["rm", "eval", str(out / "model"), str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "pairs: 96" and lines[2].startswith("eval/accuracy/reward: ")


def test_rm_errors_name_the_file_and_row(tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "chosen": "x", "rejected": "x"}\n')
    assert main(["rm", "train", "--set", f"train_data={data}", "--set", f"output_dir={tmp_path}/run"]) == 2
    assert f"{data}, row 1: 'chosen' and 'rejected' are identical" in capsys.readouterr().err


def test_rm_train_help_config_lists_keys(capsys):
    assert main(["rm", "train", "--help-config"]) == 0
    text = capsys.readouterr().out
    for key in ("ensemble_size", "denoise", "margin", "objectives", "on_invalid", "contrastive_weight"):
        assert f"  {key} (default" in text
    with pytest.raises(SystemExit):
        main(["rm"])
