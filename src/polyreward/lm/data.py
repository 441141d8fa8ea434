"""Prompt sources: rows with a ``prompt`` and any extra columns, served in a seeded order.

The order depends only on ``(seed, position)``, so a resumed run continues with exactly the rows
an uninterrupted run would have seen: the checkpoint stores the position, nothing else.
"""

from __future__ import annotations

import functools
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
            if not (isinstance(prompt, str) and prompt.strip()) and not isinstance(prompt, list):
                raise ValueError(
                    f"{name}, row {index}: {prompt_column!r} must be a non-empty string or chat messages, got {prompt!r}"
                )
        self.rows = [dict(row) for row in rows]
        self.seed, self.name, self.prompt_column = seed, name, prompt_column

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, position: int, size: int) -> list[dict[str, Any]]:
        """Rows ``position .. position + size - 1`` of the endless shuffled stream."""
        rows = []
        for p in range(position, position + size):
            epoch, offset = divmod(p, len(self.rows))
            rows.append(self.rows[_epoch_order(self.seed, len(self.rows), epoch)[offset]])
        return rows

    @property
    def columns(self) -> list[str]:
        return [c for c in self.rows[0] if c != self.prompt_column]


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
    from datasets import load_dataset

    try:
        dataset = load_dataset(kinds[path.suffix], data_files=str(path), split="train")
    except Exception as err:  # datasets raises many types; name the file in every case
        raise ValueError(f"{path}: could not be read as {kinds[path.suffix]} ({type(err).__name__}: {err})") from err
    if prompt_column not in dataset.column_names:
        raise ValueError(f"{path}: no {prompt_column!r} column; columns are {dataset.column_names}")
    return [dict(row) for row in dataset]
