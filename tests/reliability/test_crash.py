"""Crash safety: SIGKILL inside a checkpoint save, resume, and end bit-identical to an uninterrupted run.

Two kill points drawn with a fixed seed from every statement of ``save_checkpoint`` (and a
half-written ``optimizer.pt``) in the saves of steps 2..5; the point is in the test id. The full
version (10 points) is ``benchmarks/reliability_kill_resume.py``.
"""

from __future__ import annotations

import json

import pytest

from polyreward.checkpoint import CheckpointError, latest_checkpoint
from tests.reliability.kill_resume import STEPS, assert_identical, kill_then_resume, pick, run_child

SEED = 2024
POINTS = pick(2, SEED)


@pytest.fixture(scope="module")
def straight(tiny_model, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    done = run_child(run_dir, tiny_model)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


@pytest.mark.parametrize("point", POINTS, ids=[p.id for p in POINTS])
def test_killed_during_save_resumes_from_the_last_complete_checkpoint_bit_identical(point, straight, tiny_model, tmp_path):
    kill_then_resume(point, tmp_path / "run", tiny_model)
    assert_identical(straight, tmp_path / "run")


def test_killed_during_the_first_save_leaves_nothing_that_resume_would_load(tiny_model, tmp_path):
    killed = run_child(tmp_path / "run", tiny_model, STEPS, kill="1:mid-write")
    assert killed.returncode < 0
    with pytest.raises(CheckpointError, match=r"no complete checkpoint \(found \['step-0000001.partial'\]\)"):
        latest_checkpoint(tmp_path / "run")


def test_resume_drops_a_record_cut_by_the_kill_and_names_a_corrupt_one(tmp_path):
    from polyreward.runlog import RunLog

    log = RunLog(tmp_path, tensorboard=False)
    for step in (1, 2, 3):
        log.log(step, {"loss": float(step)})
    with log.samples_path.open("w") as handle:
        handle.write('{"step": 1, "completion": "a"}\n{"step": 2, "comp')  # killed mid-write
    log.truncate_after(2)
    assert [json.loads(line)["step"] for line in log.metrics_path.read_text().splitlines()] == [1, 2]
    assert log.samples_path.read_text() == '{"step": 1, "completion": "a"}\n'
    log.metrics_path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: corrupt record"):
        log.truncate_after(2)
