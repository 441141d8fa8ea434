"""Preference data: validation errors name the file and row, skipping counts, the generator's flips are exact."""

from __future__ import annotations

import json

import pytest

from polyreward.rm.data import (
    NEGATIVE,
    POSITIVE,
    PreferenceDataError,
    load_pairs,
    sentiment_pairs,
    split_pairs,
)

GOOD = {"prompt": "q", "chosen": "good answer", "rejected": "bad answer"}
BAD_ROWS = [
    ({"prompt": "q", "chosen": "a"}, "'rejected' is missing"),
    ({"prompt": "q", "chosen": "   ", "rejected": "b"}, "'chosen' is empty"),
    ({"prompt": "q", "chosen": "same", "rejected": "same"}, "identical"),
    ({"prompt": "", "chosen": "a", "rejected": "b"}, "'prompt' is empty"),
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(("bad", "why"), BAD_ROWS)
def test_malformed_row_is_an_error_naming_file_and_row(tmp_path, bad, why):
    path = _jsonl(tmp_path / "prefs.jsonl", [GOOD, GOOD, bad, GOOD])
    with pytest.raises(PreferenceDataError) as err:
        load_pairs(path)
    assert str(err.value).startswith(f"{path}, row 2: ")
    assert why in str(err.value)


def test_skip_counts_malformed_rows(tmp_path):
    path = _jsonl(tmp_path / "prefs.jsonl", [GOOD, *[b for b, _ in BAD_ROWS], GOOD])
    pairs = load_pairs(path, on_invalid="skip")
    assert len(pairs) == 2
    assert [row for row, _ in pairs.skipped] == [1, 2, 3, 4]
    assert pairs.objectives == ("reward",)
    assert pairs.pairs[0].labels == (1.0,)


def test_csv_and_objective_labels(tmp_path):
    path = tmp_path / "prefs.csv"
    path.write_text("prompt,chosen,rejected,helpful,short\nq,a b,c,1,0\nq,x,y,,1\nq,x,y,2,1\n")
    with pytest.raises(PreferenceDataError, match=r"prefs.csv, row 2: label 'helpful' must be 1"):
        load_pairs(path, objectives=["helpful", "short"])
    pairs = load_pairs(path, objectives=["helpful", "short"], on_invalid="skip")
    assert [p.labels for p in pairs.pairs] == [(1.0, 0.0), (None, 1.0)]
    assert pairs.objectives == ("helpful", "short")
    assert pairs.skipped[0][0] == 2


def test_all_rows_invalid_is_an_error(tmp_path):
    path = _jsonl(tmp_path / "prefs.jsonl", [b for b, _ in BAD_ROWS])
    with pytest.raises(PreferenceDataError, match="no valid preference pairs"):
        load_pairs(path, on_invalid="skip")


def _sentiment(text: str) -> int:
    return sum(w in POSITIVE for w in text.split()) - sum(w in NEGATIVE for w in text.split())


@pytest.mark.parametrize(("n", "fraction", "expected"), [(50, 0.2, 10), (64, 0.4, 26), (30, 0.0, 0)])
def test_generator_flips_exactly_the_requested_fraction(n, fraction, expected):
    generated = sentiment_pairs(n, flip_fraction=fraction, seed=3, objectives=("sentiment", "brevity"))
    assert len(generated.pairs) == n and sum(generated.flipped) == expected
    for pair, flipped in zip(generated.pairs.pairs, generated.flipped, strict=True):
        # a flipped pair stores the worse review as chosen; the first label always says "chosen is better"
        assert (_sentiment(pair.chosen) < _sentiment(pair.rejected)) == flipped
        assert _sentiment(pair.chosen) != _sentiment(pair.rejected)
        n_c, n_r = len(pair.chosen.split()), len(pair.rejected.split())
        assert pair.labels == (1.0, None if n_c == n_r else float(n_c < n_r))  # brevity stays truthful


def test_generator_is_seeded_and_split_is_exact():
    a, b = sentiment_pairs(20, seed=1), sentiment_pairs(20, seed=1)
    assert a.pairs.pairs == b.pairs.pairs
    assert a.pairs.pairs != sentiment_pairs(20, seed=2).pairs.pairs
    train, held_out = split_pairs(a.pairs, 0.25, seed=0)
    assert (len(train), len(held_out)) == (15, 5)
    assert sorted(map(repr, train.pairs + held_out.pairs)) == sorted(map(repr, a.pairs.pairs))
