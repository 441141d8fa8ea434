import json
import math
import os
import subprocess
import sys

import pytest

from polyreward.cli import main

GDPO_ROWS = [(0, 1, 1), (0, 1, 0), (0, 0, 1), (0, 0, 0), (1, 1, 1), (1, 1, 1), (1, 0, 1), (1, 1, 1)]


@pytest.fixture
def reward_csv(tmp_path):
    path = tmp_path / "rewards.csv"
    path.write_text("group,correct,format\n" + "".join(f"{g},{a},{b}\n" for g, a, b in GDPO_ROWS))
    return path


def test_demo_runs_as_an_installed_command():
    exe = os.path.join(os.path.dirname(sys.executable), "polyreward")
    out = subprocess.run([exe, "demo"], capture_output=True, text=True, check=True, timeout=120).stdout
    for label in ("grpo", "dr_grpo", "rloo", "reinf++", "gdpo", "hdpo", "dpa", "reward correlation"):
        assert label in out
    assert len([line for line in out.splitlines() if line.strip().startswith(("0 ", "1 ", "2 "))]) == 12


def test_diagnose_csv_prints_hand_checkable_numbers(reward_csv, capsys):
    assert main(["diagnose", str(reward_csv), "--estimator", "gdpo"]) == 0
    out = capsys.readouterr().out
    # correct = [1,1,0,0,1,1,0,1]: mean 5/8, unbiased std sqrt(15/56)
    assert f"{5 / 8:8.3f}" in out and f"{math.sqrt(15 / 56):8.3f}" in out
    # format is constant in prompt 1 -> zero variance in 1 of 2 groups
    format_line = next(line for line in out.splitlines() if line.startswith("format"))
    assert format_line.split()[4] == "0.50"


def test_diagnose_jsonl_with_null_and_estimator_settings(tmp_path, capsys):
    path = tmp_path / "rewards.jsonl"
    path.write_text(
        "\n".join(json.dumps({"group": g, "a": a, "b": None if i == 0 else b}) for i, (g, a, b) in enumerate(GDPO_ROWS))
    )
    assert main(["diagnose", str(path), "--estimator", "grpo", "--set", "scale='batch'"]) == 0
    line_b = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("b "))
    assert line_b.split()[3] == "0.88"  # 7 of 8 rows have b


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("group,a\n0,1\n0,x\n", [], "rewards.csv, row 3, column 'a': 'x' is not a number"),
        ("grp,a\n0,1\n", [], "no group column 'group'"),
        ("group,a\n0.5,1\n", [], "row 2, column 'group': group id '0.5' is not an integer"),
        ("group,a\n0,1\n0,2\n", ["--estimator", "gpdo"], "did you mean"),
        ("group,a\n0,1\n0,2\n", ["--set", "bogus=1"], "has no parameter 'bogus'"),
    ],
)
def test_bad_input_is_an_error_naming_file_row_and_column(tmp_path, capsys, content, args, message):
    path = tmp_path / "rewards.csv"
    path.write_text(content)
    assert main(["diagnose", str(path), *args]) == 2
    assert message in capsys.readouterr().err


def test_estimators_lists_every_registered_name(capsys):
    from polyreward import advantages

    assert main(["estimators"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in advantages.names())
