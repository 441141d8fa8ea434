"""Memory: a 300-step tiny-model run does not grow its resident memory after warm-up.

Bound: 30 MB over the 200 steps after a 100-step warm-up. The run itself grows ~1 MB per 1,000
steps (benchmarks/results/reliability_memory.json); keeping each step's loss graph (a classic leak,
``memory_child --leak``) grows ~0.46 MB per step, i.e. ~90 MB here, so a leak of >= 150 KB a step
fails. The 1,000-step version is ``benchmarks/reliability_memory.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.reliability.kill_resume import ROOT

STEPS, WARMUP, BOUND_MB = 300, 100, 30.0


def run_memory_child(run_dir, model_dir, steps: int, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "tests.reliability.memory_child", str(run_dir), str(steps), str(model_dir), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, timeout=600, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def growth_after_warmup(samples: dict, warmup: int) -> float:
    after = [rss for step, rss in zip(samples["steps"], samples["rss_mb"], strict=True) if step >= warmup]
    return max(after) - after[0]


def test_rss_does_not_grow_after_warmup(tiny_model, tmp_path):
    samples = run_memory_child(tmp_path / "run", tiny_model, STEPS)
    assert samples["steps"] == list(range(50, STEPS + 1, 50))
    growth = growth_after_warmup(samples, WARMUP)
    assert growth < BOUND_MB, f"RSS grew {growth:.1f} MB after step {WARMUP}: {samples}"
