"""Run reports on real tiny runs: every plot linked, summary numbers recomputed from metrics.jsonl,
completions escaped, two runs compared, bad run directories named in the error."""

import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from polyreward.lm.model import load_policy
from polyreward.lm.trainer import Trainer
from polyreward.plots import rolling_mean
from polyreward.report import compare_runs, load_run, render_report, summarize
from polyreward.rewards import RewardComponent

from .tiny_lm import ROWS, is_short, make_tiny_model, says_yes, tiny_config

STEPS = 12  # > 10 so the summary's first-10 and last-10 windows differ


def picky(prompts, completions, **kwargs):
    """1 with 'yes', not applicable with 'no', otherwise a failure (inf) that the component abstains on."""
    return [1.0 if "yes" in c.split() else None if "no" in c.split() else math.inf for c in completions]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report")
    model_dir = make_tiny_model(root / "model")
    reward_sets = {
        "gdpo": [says_yes, is_short, RewardComponent(picky, on_error="abstain")],
        "grpo": [says_yes, is_short],
    }
    out = {}
    for estimator, rewards in reward_sets.items():
        config = tiny_config(root / f"run_{estimator}", model_dir, steps=STEPS, save_every=0, estimator=estimator)
        model, tokenizer = load_policy(config.model)
        out[estimator] = Trainer(model, tokenizer, rewards, ROWS, config).train(progress=False)
    return out


@pytest.fixture(scope="module")
def gdpo_report(runs) -> Path:
    return render_report(runs["gdpo"])


def _copy_run(run: Path, to: Path) -> Path:
    return Path(shutil.copytree(run, to, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "report")))


class _Tables(HTMLParser):
    """``{table id: [[cell text, ...], ...]}`` for every ``<table id=...>`` (header row first)."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs)["id"], [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _images(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def _write(run: Path, metrics: str | None = None, samples: str | None = None, config: str | None = None) -> Path:
    run.mkdir()
    for name, text in (("metrics.jsonl", metrics), ("samples.jsonl", samples), ("config.json", config)):
        if text is not None:
            (run / name).write_text(text)
    return run


GOOD = '{"step": 0, "reward/a/mean": 1.0}\n{"step": 1, "reward/a/mean": null}\n'


def test_the_report_links_every_plot_and_names_every_reward(runs, gdpo_report):
    html = gdpo_report.read_text()
    pngs = sorted(p.name for p in gdpo_report.parent.glob("*.png"))
    assert sorted(_images(html)) == pngs
    records = [json.loads(line) for line in (runs["gdpo"] / "metrics.jsonl").read_text().splitlines()]
    assert any(r["reward/picky/abstained"] for r in records)  # so the failures plot must be there
    assert pngs == sorted(
        ["rewards.png", "advantage_share.png", "losses.png", "throughput.png", "failures.png", "collapse.png"]
    )
    for name in ("says_yes", "is_short", "picky"):
        assert name in html
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    assert all(p.stat().st_size > 10_000 for p in gdpo_report.parent.glob("*.png"))


def test_summary_numbers_are_the_first_and_last_ten_step_means(runs, gdpo_report):
    records = [json.loads(line) for line in (runs["gdpo"] / "metrics.jsonl").read_text().splitlines()]
    table = _Tables(gdpo_report.read_text()).tables["summary"]
    assert table[0] == ["reward", "first 10 steps", "last 10 steps", "change"]
    rows = {row[0]: row[1:] for row in table[1:]}
    summary = summarize(load_run(runs["gdpo"]))
    assert list(rows) == list(summary) == ["says_yes", "is_short", "picky"]
    for name in rows:
        values = [r[f"reward/{name}/mean"] for r in records]
        first = [v for v in values[:10] if v is not None]
        last = [v for v in values[-10:] if v is not None]
        expected = (sum(first) / len(first), sum(last) / len(last))
        assert (summary[name].first, summary[name].last) == pytest.approx(expected, abs=1e-12)
        assert rows[name] == [f"{expected[0]:.4f}", f"{expected[1]:.4f}", f"{expected[1] - expected[0]:+.4f}"]


def test_sample_completions_are_escaped_and_come_from_both_ends(runs, tmp_path):
    run = _copy_run(runs["gdpo"], tmp_path / "run")
    hostile = {"step": STEPS - 1, "prompt": "<b>&amp;</b>", "completion": '<script>alert("x")</script>'}
    with (run / "samples.jsonl").open("a") as handle:
        handle.write(json.dumps({**hostile, "rewards": {"says_yes": 0.5, "is_short": None}}) + "\n")
    html = render_report(run).read_text()
    assert "<script" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html and "&lt;b&gt;&amp;amp;&lt;/b&gt;" in html
    steps = {int(row[0]) for row in _Tables(html).tables["samples"][1:]}
    assert steps == {0, 1, 2, STEPS - 3, STEPS - 2, STEPS - 1}


def test_rendering_again_removes_a_stale_plot(tmp_path):
    run = _write(tmp_path / "run", metrics=GOOD)  # no failure counts at all
    (run / "report").mkdir()
    (run / "report" / "failures.png").write_bytes(b"stale")
    html = render_report(run).read_text()
    assert not (run / "report" / "failures.png").exists()
    assert "No reward failed" in html


def test_compare_overlays_both_runs(runs, tmp_path):
    index = compare_runs([runs["gdpo"], runs["grpo"]], tmp_path / "cmp")
    html = index.read_text()
    assert "run_gdpo (gdpo)" in html and "run_grpo (grpo)" in html
    pngs = sorted(p.name for p in index.parent.glob("*.png"))
    assert sorted(_images(html)) == pngs
    assert pngs == [
        "compare_00_says_yes.png",
        "compare_01_is_short.png",
        "compare_02_picky.png",
        "compare_collapsed_groups.png",
    ]
    rows = _Tables(html).tables["summary"][1:]
    assert [(row[0], row[1]) for row in rows] == [
        (name, run) for name in ("says_yes", "is_short", "picky") for run in ("run_gdpo (gdpo)", "run_grpo (grpo)")
    ]
    assert rows[-1][2:] == ["n/a", "n/a", "n/a"]  # grpo run has no picky reward
    assert _Tables(html).tables["runs"][1][0] == "run_gdpo (gdpo)"


@pytest.mark.parametrize(
    ("files", "error", "message"),
    [
        ({}, FileNotFoundError, r"run[/\\]metrics\.jsonl: no metrics"),
        ({"metrics": ""}, ValueError, r"metrics\.jsonl: empty"),
        ({"metrics": '{"step": 0}\n{"step": 1, "reward/a/mean": 0.\n'}, ValueError, r"metrics\.jsonl, line 2: corrupt"),
        ({"metrics": '{"step": 0}\n[1, 2]\n'}, ValueError, r"metrics\.jsonl, line 2: expected a JSON object"),
        ({"metrics": '{"step": 0, "loss/kl": "big"}\n'}, ValueError, r"line 1: metric 'loss/kl' is not a number"),
        ({"metrics": '{"step": 3}\n{"step": 1}\n'}, ValueError, r"line 2: step 1 does not follow step 3"),
        ({"metrics": GOOD, "samples": '{"step": 0, "completion": "x"}\n{"step'}, ValueError, r"samples\.jsonl, line 2"),
        ({"metrics": GOOD, "config": '{"estimator": }'}, ValueError, r"config\.json, line 1: corrupt JSON"),
    ],
)
def test_a_bad_run_directory_is_an_error_naming_the_file(tmp_path, files, error, message):
    run = tmp_path / "run" if not files else _write(tmp_path / "run", **files)
    with pytest.raises(error, match=message):
        render_report(run)
    with pytest.raises(error, match=message):
        compare_runs([run], tmp_path / "cmp")
    assert not (tmp_path / "cmp").exists()  # runs are checked before anything is written


def test_a_minimal_run_directory_renders_and_null_and_inf_are_read(tmp_path):
    run = _write(tmp_path / "run", metrics=GOOD + '{"step": 2, "loss/kl": "-inf", "loss/grad_norm": "inf"}\n')
    loaded = load_run(run)
    assert math.isnan(loaded.records[1]["reward/a/mean"])
    assert (loaded.records[2]["loss/kl"], loaded.records[2]["loss/grad_norm"]) == (-math.inf, math.inf)
    html = render_report(run).read_text()
    assert "No samples.jsonl" in html and "No config.json" in html
    assert _Tables(html).tables["summary"][1] == ["a", "1.0000", "1.0000", "+0.0000"]
    with pytest.raises(ValueError, match="at least one run directory"):
        compare_runs([], tmp_path / "cmp")


def test_rolling_mean_skips_nan_and_uses_a_trailing_window():
    values = np.array([1.0, math.nan, 3.0, 5.0, math.nan, math.nan, math.nan])
    expected = [1.0, 1.0, 3.0, 4.0, 5.0, math.nan, math.nan]
    np.testing.assert_allclose(rolling_mean(values, 2), expected)
