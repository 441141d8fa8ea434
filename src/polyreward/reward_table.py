"""Read a reward matrix from a CSV or JSONL file into a RewardBatch (for ``polyreward diagnose``).

Each row is one sample; one column holds the group (prompt) id, every other column is a named
reward. An empty CSV cell or a JSON ``null`` means "not applicable" (NaN).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from polyreward.batch import RewardBatch


def read_reward_table(path: str | Path, group_column: str = "group") -> RewardBatch:
    """Load ``path`` (``.csv`` or ``.jsonl``); errors name the file, the row and the column."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        first_row = 2  # line 1 is the header
    elif path.suffix in (".jsonl", ".json"):
        rows = []
        for line_no, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}, line {line_no}: not valid JSON ({err.msg})") from err
        first_row = 1
    else:
        raise ValueError(f"{path}: expected a .csv or .jsonl file, got {path.suffix or 'no extension'!r}")
    if not rows:
        raise ValueError(f"{path}: no rows")
    names = [c for c in rows[0] if c != group_column]
    if group_column not in rows[0]:
        raise ValueError(
            f"{path}: no group column {group_column!r}; columns are {list(rows[0])} (choose one with --group-column)"
        )
    rewards, groups = [], []
    for offset, row in enumerate(rows):
        where = f"{path}, row {first_row + offset}"
        if set(row) != set(rows[0]):
            raise ValueError(f"{where}: columns {sorted(row)} differ from the first row's {sorted(rows[0])}")
        groups.append(_group_id(row[group_column], where, group_column))
        rewards.append([_reward(row[name], where, name) for name in names])
    return RewardBatch(rewards=rewards, names=names, group_ids=groups)


def _reward(value: object, where: str, column: str) -> float:
    if value is None or value == "":
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}, column {column!r}: {value!r} is not a number (leave it empty for 'not applicable')"
        ) from None
    if math.isinf(number):
        raise ValueError(f"{where}, column {column!r}: infinite reward")
    return number


def _group_id(value: object, where: str, column: str) -> int:
    try:
        number = float(value)
        if number != int(number):
            raise ValueError
        return int(number)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{where}, column {column!r}: group id {value!r} is not an integer") from None
