"""Prompt sources: rows with a ``prompt`` and any extra columns, served in a seeded order.

The order depends only on ``(seed, position)``, so a resumed run continues with exactly the rows
an uninterrupted run would have seen: the checkpoint stores the position, nothing else.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class PromptSource:
    """A list of rows, reshuffled every epoch with ``seed``; ``batch(position, size)`` reads on."""

    def __init__(
        self, rows: Sequence[Mapping[str, Any]], *, seed: int = 0, name: str = "prompts", prompt_column: str = "prompt"
    ):
        if not rows:
            raise ValueError(f"{name}: no rows")
        for index, row in enumerate(rows):
            if prompt_column not in row:
                raise ValueError(f"{name}, row {index}: no {prompt_column!r} column (columns: {sorted(row)})")
            prompt = row[prompt_column]
            if not (isinstance(prompt, str) and prompt.strip()) and not _is_chat(prompt):
                raise ValueError(
                    f"{name}, row {index}: {prompt_column!r} must be a non-empty string or chat messages "
                    f"([{{role, content}}, ...]), got {prompt!r}"
                )
        self.rows = [dict(row) for row in rows]
        self.seed, self.name, self.prompt_column = seed, name, prompt_column

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, position: int, size: int) -> list[dict[str, Any]]:
        """Rows ``position .. position + size - 1`` of the endless shuffled stream."""
        return [self.rows[i] for i in self.indices(position, size)]

    def indices(self, position: int, size: int) -> list[int]:
        """Indices into ``rows`` of stream positions ``position .. position + size - 1``."""
        out = []
        for p in range(position, position + size):
            epoch, offset = divmod(p, len(self.rows))
            out.append(_epoch_order(self.seed, len(self.rows), epoch)[offset])
        return out

    @property
    def columns(self) -> list[str]:
        return [c for c in self.rows[0] if c != self.prompt_column]


def _is_chat(prompt: Any) -> bool:
    return (
        isinstance(prompt, list)
        and bool(prompt)
        and all(isinstance(m, Mapping) and isinstance(m.get("role"), str) and "content" in m for m in prompt)
    )


@functools.lru_cache(maxsize=4)
def _epoch_order(seed: int, size: int, epoch: int) -> tuple[int, ...]:
    order = list(range(size))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return tuple(order)


def load_rows(path: str | Path, prompt_column: str = "prompt") -> list[dict[str, Any]]:
    """Rows of a local ``.jsonl`` / ``.json`` / ``.parquet`` / ``.csv`` file, read with ``datasets``."""
    path = Path(path)
    kinds = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix not in kinds:
        raise ValueError(f"{path}: expected one of {sorted(kinds)}, got {path.suffix or 'no extension'!r}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file, no rows")
    from datasets import load_dataset

    try:
        dataset = load_dataset(kinds[path.suffix], data_files=str(path), split="train")
    except Exception as err:  # datasets raises many types; name the file in every case, and the row when we can
        where = _first_bad_line(path) or f"could not be read as {kinds[path.suffix]}"
        raise ValueError(f"{path}: {where} ({type(err).__name__}: {err})") from err
    if prompt_column not in dataset.column_names:
        raise ValueError(f"{path}: no {prompt_column!r} column; columns are {dataset.column_names}")
    return [dict(row) for row in dataset]


def _first_bad_line(path: Path) -> str | None:
    """Why ``datasets`` could not read a JSON-lines or CSV file, naming the line (None: not found)."""
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as err:
        return f"not valid UTF-8 text at byte {err.start}"
    if path.suffix == ".csv":
        import csv

        rows = list(csv.reader(lines))
        for number, row in enumerate(rows[1:], start=2):
            if row and len(row) != len(rows[0]):
                return f"line {number}: {len(row)} fields, the header has {len(rows[0])}"
        return None
    if path.suffix != ".jsonl":
        return None
    first: dict[str, type] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            return f"line {number}: not valid JSON ({err.msg})"
        if not isinstance(row, dict):
            return f"line {number}: expected a JSON object (one row), got {type(row).__name__}"
        for key, value in row.items():
            kind = type(value) if value is not None else None
            if kind is not None and first.setdefault(key, kind) is not kind and {kind, first[key]} != {int, float}:
                return f"line {number}, column {key!r}: {kind.__name__}, earlier rows have {first[key].__name__}"
    return None
