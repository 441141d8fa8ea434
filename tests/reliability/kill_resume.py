"""Kill a tiny-model run inside a checkpoint save, resume it, compare it with an uninterrupted run.

Shared by ``tests/reliability/test_crash.py`` (1-2 seeded kill points) and
``benchmarks/reliability_kill_resume.py`` (10).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from polyreward.checkpoint import checkpoint_dir, latest_checkpoint

ROOT = Path(__file__).resolve().parents[2]
STEPS = 5


@dataclasses.dataclass(frozen=True)
class KillPoint:
    """Die while saving the checkpoint of ``step``: before ``line`` of ``save_checkpoint`` or mid-write."""

    step: int
    where: str  # a line number, or "mid-write"
    source: str  # the line's code (for the test id and the report)
    after_rename: bool  # the checkpoint of ``step`` is already in place when the kill lands

    @property
    def id(self) -> str:
        code = re.sub(r"\W+", "_", self.source).strip("_")[:24].strip("_")
        return f"step{self.step}-{'L' + self.where if self.where.isdigit() else self.where}-{code}"

    @property
    def expected_checkpoint(self) -> int:
        """The step of the checkpoint that resume must pick."""
        return self.step if self.after_rename else self.step - 1


def all_kill_points(steps: int = STEPS) -> list[KillPoint]:
    """Every statement of the save, and a truncated optimizer.pt, in the saves of steps 2..steps."""
    from tests.reliability.crash_child import save_lines

    lines = save_lines()
    rename = next(n for n, code in lines if code.startswith("staging.rename("))
    places = [(str(n), code, n > rename) for n, code in lines] + [("mid-write", "torch.save -> optimizer.pt", False)]
    return [KillPoint(step, where, code, after) for step in range(2, steps + 1) for where, code, after in places]


def pick(count: int, seed: int, steps: int = STEPS) -> list[KillPoint]:
    return random.Random(seed).sample(all_kill_points(steps), count)


def run_child(run_dir: Path, model_dir: Path, steps: int = STEPS, *, resume: bool = False, kill: str | None = None):
    cmd = [sys.executable, "-m", "tests.reliability.crash_child", str(run_dir), str(steps), str(model_dir)]
    cmd += ["--resume"] if resume else []
    cmd += ["--kill", kill] if kill else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=ROOT, env=env, timeout=300, capture_output=True, text=True)


def kill_then_resume(point: KillPoint, run_dir: Path, model_dir: Path, steps: int = STEPS) -> dict:
    """Run until ``point`` kills the process, check what resume will pick, resume to the end."""
    killed = run_child(run_dir, model_dir, steps, kill=f"{point.step}:{point.where}")
    assert killed.returncode == -signal.SIGKILL, f"{point.id}: not killed (rc {killed.returncode})\n{killed.stderr[-2000:]}"
    picked = latest_checkpoint(run_dir)
    assert picked == checkpoint_dir(run_dir, point.expected_checkpoint), (point.id, picked)
    leftovers = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.endswith(".partial"))
    resumed = run_child(run_dir, model_dir, steps, resume=True)
    assert resumed.returncode == 0, f"{point.id}: resume failed\n{resumed.stderr[-3000:]}"
    return {"kill_point": point.id, "resumed_from": picked.name, "partial_left_by_kill": leftovers}


def assert_identical(straight: Path, resumed: Path, steps: int = STEPS) -> None:
    """Final weights bit for bit, metrics (wall-clock times excepted) and logged samples equal."""
    final = checkpoint_dir(Path(""), steps) / "model" / "model.safetensors"
    a, b = load_file(straight / final), load_file(resumed / final)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "weights differ"
    assert _records(straight / "metrics.jsonl") == _records(resumed / "metrics.jsonl"), "metrics differ"
    assert _records(straight / "samples.jsonl") == _records(resumed / "samples.jsonl"), "samples differ"
    assert not [p for p in (resumed / "checkpoints").iterdir() if p.name.endswith(".partial")], "a .partial is left"


def _records(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in rows]
