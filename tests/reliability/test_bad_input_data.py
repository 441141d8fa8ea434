"""Dataset and RewardBatch fuzzing: bad rows, bad files, bad arrays.

Every failure must be a polyreward error (raised by polyreward code, a ValueError or TypeError)
naming the file and row, or the RewardBatch field; never an exception from inside a dependency.
"""

from __future__ import annotations

import json
import math
import tempfile
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyreward.batch import RewardBatch
from polyreward.lm.data import PromptSource, load_rows
from polyreward.rm.data import PreferenceDataError, load_pairs, validate_rows

FAST = settings(max_examples=80, deadline=None)
SLOW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])

cells = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(max_size=6),
    st.lists(st.integers(0, 2), max_size=2),
    st.just([{"role": "user", "content": "hi"}]),
    st.just([{"content": "no role"}]),
    st.dictionaries(st.sampled_from(["role", "content"]), st.text(max_size=3), max_size=2),
)
rows = st.lists(
    st.dictionaries(st.sampled_from(["prompt", "chosen", "rejected", "answer", "good", "user"]), cells, max_size=5),
    min_size=1,
    max_size=5,
)


def assert_ours(err: BaseException, *names: str) -> None:
    """Raised by polyreward itself, a ValueError/TypeError, naming every one of ``names``."""
    assert isinstance(err, (ValueError, TypeError, FileNotFoundError)), repr(err)
    origin = traceback.extract_tb(err.__traceback__)[-1].filename
    assert "/polyreward/" in origin, f"raised inside a dependency ({origin}): {err!r}"
    for name in names:
        assert name in str(err), f"{name!r} not named in: {err}"


@FAST
@given(rows=rows)
def test_prompt_rows_load_or_name_the_row(rows):
    try:
        source = PromptSource(rows, name="data.jsonl")
    except ValueError as err:
        assert_ours(err, "data.jsonl, row ")
        return
    for row in source.rows:
        assert (isinstance(row["prompt"], str) and row["prompt"].strip()) or row["prompt"][0]["content"] is not None


@FAST
@given(rows=rows, objectives=st.sampled_from([(), ("good",)]), on_invalid=st.sampled_from(["raise", "skip"]))
def test_preference_rows_load_or_name_the_row(rows, objectives, on_invalid):
    try:
        pairs = validate_rows(rows, "pairs.jsonl", objectives=objectives, on_invalid=on_invalid)
    except PreferenceDataError as err:
        assert_ours(err, "pairs.jsonl")
        assert "row " in str(err) or "no valid preference pairs" in str(err)
        return
    assert all(p.chosen != p.rejected for p in pairs.pairs)


def _write(directory: Path, name: str, text: str | bytes) -> Path:
    path = directory / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _prompts(path: Path) -> None:
    PromptSource(load_rows(path), name=str(path))


BAD_FILES = [  # (reader, file name, contents, expected message)
    (_prompts, "empty.jsonl", "", r"empty file"),
    (_prompts, "broken.jsonl", '{"prompt": "a"}\n{"prompt": \n', r"line 2: not valid JSON"),
    (_prompts, "array-line.jsonl", '{"prompt": "a"}\n[1, 2]\n', r"line 2: expected a JSON object"),
    (_prompts, "no-prompt.jsonl", '{"q": "a"}\n', r"no 'prompt' column"),
    (_prompts, "missing-prompt.jsonl", '{"prompt": "a"}\n{"q": "b"}\n', r"row 1: 'prompt' must be"),
    (_prompts, "int-prompt.jsonl", '{"prompt": 3}\n', r"row 0: 'prompt' must be"),
    (_prompts, "not-chat.jsonl", '{"prompt": [1, 2]}\n', r"row 0: 'prompt' must be a non-empty string or chat messages"),
    (_prompts, "empty.csv", "", r"empty file"),
    (_prompts, "ragged.csv", "prompt,answer\na,b\nb,c,d\n", r"line 3: 3 fields, the header has 2"),
    (_prompts, "data.txt", "prompt\n", r"expected one of"),
    (load_pairs, "broken.jsonl", '{"prompt": "p", "chosen": "a", "rejected": "b"}\n{\n', r"line 2: not valid JSON"),
    (load_pairs, "same.jsonl", '{"prompt": "p", "chosen": "a", "rejected": "a"}\n', r"row 0: 'chosen' and 'rejected' are"),
    (load_pairs, "no-rejected.csv", "prompt,chosen\np,a\n", r"row 0: 'rejected' is missing"),
    (load_pairs, "short-row.csv", "prompt,chosen,rejected\np,a,b\np,a\n", r"row 1: 'rejected' is missing"),
]


@pytest.mark.parametrize(
    ("read", "name", "text", "message"),
    BAD_FILES,
    ids=[f"{'pairs' if b[0] is load_pairs else 'prompts'}-{b[1]}" for b in BAD_FILES],
)
def test_bad_files_name_the_file_and_row(read, name, text, message, tmp_path):
    path = _write(tmp_path, name, text)
    with pytest.raises(ValueError, match=message) as caught:
        read(path)
    assert_ours(caught.value, str(path))


json_lines = st.one_of(
    st.dictionaries(st.sampled_from(["prompt", "answer"]), cells, max_size=2).map(json.dumps),
    st.text(alphabet='{}[]":, pa1', max_size=8),
    st.just(""),
)


@SLOW
@given(lines=st.lists(json_lines, max_size=4))
def test_random_jsonl_files_load_or_raise_our_error(lines):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), "data.jsonl", "\n".join(lines))
        try:
            PromptSource(load_rows(path), name=str(path))
        except ValueError as err:
            assert_ours(err, str(path))


# ---------------------------------------------------------------- RewardBatch

numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70), st.none())
junk = st.one_of(st.text(max_size=3), st.booleans(), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))


@st.composite
def arrays(draw, allow_junk=True):
    """Nested lists (sometimes ragged), numpy arrays or tensors of random dtype, or junk."""
    n, k = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    kind = draw(st.sampled_from(["list", "ragged", "numpy", "tensor", "flat"] + (["junk"] if allow_junk else [])))
    if kind == "junk":
        return draw(junk)
    if kind == "flat":
        return draw(st.lists(numbers, max_size=3))
    if kind == "ragged":
        return [draw(st.lists(numbers, min_size=1, max_size=3)) for _ in range(n)]
    values = [[draw(numbers) for _ in range(k)] for _ in range(n)]
    if kind == "list":
        return values
    dtype = draw(st.sampled_from(["float32", "float64", "int64", "bool", "complex64"]))
    clean = np.array([[0.0 if v is None or abs(v) > 1e30 else v for v in row] for row in values], dtype="float64")
    array = np.nan_to_num(clean).astype(dtype) if dtype in ("int64", "bool") else clean.astype(dtype)
    return array.reshape(n, k) if kind == "numpy" else torch.from_numpy(array.reshape(n, k))


names = st.one_of(st.lists(st.sampled_from(["a", "b", "c", ""]), max_size=4), st.integers(), st.none(), st.text(max_size=2))
group_ids = st.one_of(
    st.none(), st.lists(st.one_of(st.integers(-3, 2**70), st.floats(), st.none(), st.text(max_size=1)), max_size=4)
)
FIELDS = ("rewards", "names", "group_ids", "weights", "budgets", "response_mask")


@settings(max_examples=200, deadline=None)
@given(
    rewards=arrays(),
    names=names,
    group_ids=group_ids,
    weights=st.one_of(st.none(), st.lists(numbers, max_size=4), junk),
    budgets=st.one_of(st.none(), st.lists(numbers, max_size=4)),
    response_mask=st.one_of(st.none(), arrays()),
)
def test_reward_batch_builds_or_names_the_field(rewards, names, group_ids, weights, budgets, response_mask):
    fields = dict(
        rewards=rewards, names=names, group_ids=group_ids, weights=weights, budgets=budgets, response_mask=response_mask
    )
    try:
        batch = RewardBatch(**fields)
    except (ValueError, TypeError) as err:
        assert_ours(err)
        assert any(f"RewardBatch.{field}" in str(err) for field in FIELDS), str(err)
        return
    assert batch.rewards.dim() == 2 and not torch.isinf(batch.rewards).any()
    assert len(batch.names) == batch.num_rewards and torch.isfinite(batch.weights).all()
    assert batch.group_index.shape == (batch.num_samples,)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rewards": [[1.0, math.inf]], "names": ["a"]}, r"RewardBatch.names: expected K=2 names"),
        ({"rewards": {"a": 1}, "names": ["a"]}, r"RewardBatch.rewards: expected numbers"),
        ({"rewards": [[1.0]], "names": 5}, r"RewardBatch.names: expected a sequence"),
        ({"rewards": [[1.0]], "names": ["a"], "group_ids": [None]}, r"RewardBatch.group_ids: expected integers"),
        ({"rewards": [[1.0]], "names": ["a"], "group_ids": [2**70]}, r"RewardBatch.group_ids: expected integers"),
        ({"rewards": [[1.0]], "names": ["a"], "response_mask": [["x"]]}, r"RewardBatch.response_mask: expected a bool"),
    ],
    ids=["inf-with-too-few-names", "dict-rewards", "int-names", "none-group-id", "huge-group-id", "str-mask"],
)
def test_reward_batch_regressions_found_by_the_fuzzer(fields, message):
    with pytest.raises((ValueError, TypeError), match=message) as caught:
        RewardBatch(**fields)
    assert_ours(caught.value)
