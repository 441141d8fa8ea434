"""``benchmarks/evidence_bstar_smollm2.py --smoke`` on the tiny offline Llama: online RFT runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .tiny_lm import make_tiny_model

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "evidence_bstar_smollm2.py"


def test_bstar_rft_script_smoke(tmp_path):
    model = make_tiny_model(tmp_path / "model")
    command = [sys.executable, str(SCRIPT), "--smoke", "--model", str(model), "--threads", "1"]
    command += ["--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "evidence_bstar_smollm2.json").read_text())
    assert (tmp_path / "out" / "evidence_bstar_smollm2.png").stat().st_size > 0
    assert set(report["curves"]) == {"bstar", "rft_T1.0", "rft_T0.4"} and report["seeds"] == [0]
    for curves in report["curves"].values():
        assert len(curves["correct"][0]) == 3  # the base model, then 2 iterations
        assert all(t in report["grid"]["temperatures"] for t in curves["temperature"][0])
        assert all(0 <= b <= 1 for b in curves["balance"][0])
    assert report["curves"]["rft_T1.0"]["temperature"][0] == [1.0, 1.0]
    assert report["curves"]["rft_T0.4"]["threshold"][0] == [2.0, 2.0]
    assert len(report["comparisons"]) == 8
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["bstar-0.json", "rft_T0.4-0.json", "rft_T1.0-0.json"]
