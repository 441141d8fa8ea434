"""Crash safety, full version: 10 SIGKILLs inside checkpoint saves, each resumed and compared bit for bit.

Kill points are drawn (seed 0) from every statement of ``polyreward.checkpoint.save_checkpoint`` and a
half-written ``optimizer.pt``, in the saves of steps 2..5 of the tiny-model run of
``tests/reliability/crash_child.py``. For each: the run is killed there, ``latest_checkpoint`` must
pick the last complete checkpoint, the resumed run must end with the uninterrupted run's weights (bit
for bit), metrics (wall-clock times excepted) and samples. The CI version (2 points) is
``tests/reliability/test_crash.py``.

    .venv/bin/python benchmarks/reliability_kill_resume.py   # writes results/reliability_kill_resume.json
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.tiny_lm import make_tiny_model  # noqa: E402
from tests.reliability.kill_resume import STEPS, assert_identical, kill_then_resume, pick, run_child  # noqa: E402

KILLS, SEED = 10, 0
OUT = Path(__file__).parent / "results"


def main() -> None:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_tiny_model(tmp / "model")
        assert run_child(tmp / "straight", model).returncode == 0
        results = []
        for i, point in enumerate(pick(KILLS, SEED)):
            run_dir = tmp / f"killed{i}"
            t = time.perf_counter()
            record = kill_then_resume(point, run_dir, model)
            assert_identical(tmp / "straight", run_dir)
            record.update(bit_identical=True, seconds=round(time.perf_counter() - t, 2))
            print(json.dumps(record), flush=True)
            results.append(record)
    OUT.mkdir(exist_ok=True)
    summary = {
        "what": "SIGKILL inside checkpoint saves of a tiny-model run, resume, compare with an uninterrupted run",
        "steps": STEPS,
        "seed": SEED,
        "kills": len(results),
        "all_bit_identical": all(r["bit_identical"] for r in results),
        "results": results,
        "seconds": round(time.perf_counter() - start, 1),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
    }
    (OUT / "reliability_kill_resume.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{len(results)} kill points, all bit-identical: {summary['all_bit_identical']} ({summary['seconds']} s)")


if __name__ == "__main__":
    main()
