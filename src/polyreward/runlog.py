"""Run artifacts: ``metrics.jsonl`` (one record per step), TensorBoard events, ``samples.jsonl``.

Metric names are fixed: ``reward/<name>/mean``, ``adv/...``, ``loss/...``, ``time/...``. Records
carry ``step``; on resume, records after the checkpoint's step are dropped so the files equal an
uninterrupted run's (``time/*`` values excepted: wall clock never repeats).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def open_run(run_dir: Path, config: Any, resuming: bool) -> RunLog:
    """The log of a run that starts (refusing a directory that already holds one) or resumes; writes
    ``config.json`` (``config``: a config dataclass)."""
    from polyreward.config import to_mapping

    if not resuming and (run_dir / "checkpoints").exists():
        raise FileExistsError(f"{run_dir}: already holds a run; resume it (--resume) or choose another output_dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(to_mapping(config), indent=2))
    return RunLog(run_dir)


class RunLog:
    """Appends metrics and samples of a run directory; TensorBoard when ``tensorboard`` is installed."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.samples_path = self.run_dir / "samples.jsonl"
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional; JSONL is always written
                SummaryWriter = None
            if SummaryWriter is not None:
                self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        record = {"step": step, **{k: _jsonable(v) for k, v in metrics.items()}}
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(key, value, step)
            self._writer.flush()

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        with self.samples_path.open("a") as handle:
            for sample in samples:
                handle.write(json.dumps({"step": step, **sample}) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records with ``step > step`` (resuming from a checkpoint taken after ``step``), and a
        last line left unterminated by a process killed while writing it."""
        for path in (self.metrics_path, self.samples_path):
            if path.exists():
                text = path.read_text()
                lines = text.splitlines()
                if lines and not text.endswith("\n"):
                    lines.pop()  # a partial record: written after the checkpoint, so dropped anyway
                kept = [line for number, line in enumerate(lines, 1) if _record_step(path, number, line) <= step]
                path.write_text("".join(line + "\n" for line in kept))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl``; an error names the file and line if one is corrupt."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics (is {run_dir} a polyreward run directory?)")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: corrupt record ({err.msg})") from err
    return records


def _record_step(path: Path, number: int, line: str) -> int:
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}, line {number}: corrupt record, cannot resume past it ({err})") from err


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value
