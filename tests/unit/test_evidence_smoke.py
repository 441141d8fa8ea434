"""The gym evidence benchmarks (claims 6-8) run end to end in their ``--smoke`` form and write their JSON
and plot: per-seed numbers for every arm, a mean and 95% interval per metric, one verdict per comparison."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.parametrize(
    ("script", "metric"),
    [
        ("evidence_pbrs", "eval/true_return"),
        ("evidence_multicritic", "eval/weighted_return"),
        ("evidence_bonus", "train/return_auc"),
    ],
)
def test_smoke_run_writes_json_and_plot(tmp_path, script, metric):
    subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{script}.py"), "--smoke", "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    report = json.loads((tmp_path / f"{script}.json").read_text())
    assert (tmp_path / f"{script}.png").stat().st_size > 0
    assert report["seeds"] == [0, 1]
    assert set(report["final"]) == set(report["arms"]) == set(report["summary"]) == set(report["curves"])
    for arm, metrics in report["final"].items():
        assert len(metrics[metric]) == 2, arm
        assert set(report["summary"][arm][metric]) == {"mean", "low", "high", "n"}
        assert len(report["curve_steps"][arm]) == len(next(iter(report["curves"][arm].values()))[0])
    assert len(report["verdicts"]) == len(report["comparisons"]) > 0
    for comparison in report["comparisons"]:
        assert comparison["a"] in report["arms"] and comparison["b"] in report["arms"]
        assert comparison["effect"]["n"] == 2
