"""Static HTML reports of run directories: ``render_report(run_dir)`` and ``compare_runs(run_dirs, out_dir)``.

A report is an ``index.html`` plus PNGs beside it (relative links, no JavaScript, nothing fetched),
so the folder can be copied, zipped or opened from disk. Input is what the trainer writes:
``metrics.jsonl`` (required), ``samples.jsonl`` and ``config.json`` (optional). Every error names
the file, and the line where there is one.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from polyreward import plots
from polyreward.runlog import read_metrics

SUMMARY_WINDOW = 10  # steps averaged at each end of the run in the summary table
SAMPLE_STEPS = 3  # distinct logged steps shown from each end of samples.jsonl
MAX_TEXT = 2000  # characters of a prompt or completion shown
REWARD_MEAN = re.compile(r"reward/(.+)/mean")
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; max-width: 45em; font-size: 0.95em; }
figure { margin: 1.5em 0; } img { max-width: 100%; border: 1px solid #eee; }
figcaption, .note { color: #555; font-size: 0.9em; max-width: 60em; }
"""


@dataclasses.dataclass(frozen=True)
class Run:
    """A loaded run directory. ``records``: one dict per logged step, ordered by step, every value a
    float (``null`` as NaN); ``reward_names`` in the order the metrics first name them."""

    path: Path
    records: list[dict[str, float]]
    samples: list[dict[str, Any]]
    config: dict[str, Any]
    reward_names: list[str]

    @property
    def is_gym(self) -> bool:
        return self.config.get("trainer") == "gym"

    @property
    def estimator(self) -> str:
        if self.is_gym:
            return f"ppo (critic {self.config.get('critic')}, {self.config.get('critic_norm')})"
        return str(self.config.get("estimator", "unknown estimator"))


@dataclasses.dataclass(frozen=True)
class RewardSummary:
    """Mean of ``reward/<name>/mean`` over the first and the last ``window`` logged steps (NaN steps
    skipped; NaN when every step in the window is NaN)."""

    first: float
    last: float

    @property
    def change(self) -> float:
        return self.last - self.first


# ---------------------------------------------------------------------- loading
def load_run(run_dir: str | Path) -> Run:
    """Read and check a run directory; the error names the file (and line) that is missing or corrupt."""
    path = Path(run_dir)
    metrics_path = path / "metrics.jsonl"
    raw = read_metrics(path)
    if not raw:
        raise ValueError(f"{metrics_path}: empty, no step was logged")
    records = [_numeric_record(record, metrics_path, line) for line, record in enumerate(raw, start=1)]
    for line in range(2, len(records) + 1):
        previous, step = records[line - 2]["step"], records[line - 1]["step"]
        if step <= previous:
            raise ValueError(
                f"{metrics_path}, line {line}: step {step:g} does not follow step {previous:g} (line {line - 1}); "
                "was the run restarted without --resume?"
            )
    samples = _read_samples(path / "samples.jsonl")
    return Run(path, records, samples, _read_config(path / "config.json"), reward_names(records))


def reward_names(records: Sequence[dict[str, Any]]) -> list[str]:
    """Names ``<name>`` of the ``reward/<name>/mean`` metrics, in order of first appearance."""
    names: dict[str, None] = {}
    for record in records:
        for key in record:
            match = REWARD_MEAN.fullmatch(key)
            if match:
                names.setdefault(match.group(1))
    return list(names)


def _numeric_record(record: Any, path: Path, line: int) -> dict[str, float]:
    if not isinstance(record, dict) or isinstance(record.get("step"), bool) or not isinstance(record.get("step"), int):
        raise ValueError(f"{path}, line {line}: expected a JSON object with an integer 'step', got {str(record)[:80]!r}")
    return {key: _number(value, path, line, key) for key, value in record.items()}


def _number(value: Any, path: Path, line: int, key: str) -> float:
    """A metric value as a float: ``null`` -> NaN, and the ``"inf"``/``"-inf"`` strings RunLog writes."""
    if value is None:
        return math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("inf", "-inf", "+inf", "nan", "infinity", "-infinity"):
        return float(value)
    raise ValueError(f"{path}, line {line}: metric {key!r} is not a number (got {value!r})")


def _read_jsonl(path: Path) -> list[tuple[int, Any]]:
    out = []
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            out.append((line, json.loads(text)))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {line}: corrupt record ({err.msg})") from err
    return out


def _read_samples(path: Path) -> list[dict[str, Any]]:
    """``samples.jsonl`` records (``[]`` without the file); each needs ``step`` and ``completion``."""
    if not path.is_file():
        return []
    samples = []
    for line, record in _read_jsonl(path):
        if not isinstance(record, dict) or not isinstance(record.get("step"), int) or "completion" not in record:
            raise ValueError(f"{path}, line {line}: expected a JSON object with 'step' and 'completion'")
        if not isinstance(record.get("rewards", {}), dict):
            raise ValueError(f"{path}, line {line}: 'rewards' must map reward names to values")
        samples.append(record)
    return samples


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}, line {err.lineno}: corrupt JSON ({err.msg})") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object of config keys, got {type(config).__name__}")
    return config


# ---------------------------------------------------------------------- numbers
def summarize(run: Run, window: int = SUMMARY_WINDOW) -> dict[str, RewardSummary]:
    """Per reward: mean over the first ``window`` and the last ``window`` logged steps (they overlap
    when the run has fewer than ``2 * window`` steps)."""
    out = {}
    for name in run.reward_names:
        values = [record.get(f"reward/{name}/mean", math.nan) for record in run.records]
        out[name] = RewardSummary(_finite_mean(values[:window]), _finite_mean(values[-window:]))
    return out


def _finite_mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _fmt(value: Any, signed: bool = False) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            return "n/a" if math.isnan(value) else str(value)
        return f"{value:+.4f}" if signed else f"{value:.4f}"
    return "n/a" if value is None else str(value)


# ---------------------------------------------------------------------- HTML pieces
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(html_text: str, numeric: bool = False) -> str:
    """A ``<td>`` around already-escaped HTML."""
    return f'<td class="num">{html_text}</td>' if numeric else f"<td>{html_text}</td>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], table_id: str, numeric_from: int = 99) -> str:
    """A table of plain-text cells (escaped here); cells ``numeric_from`` on are right-aligned."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(_esc(c), i >= numeric_from) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _text_cell(text: Any) -> str:
    text = str(text)
    if len(text) > MAX_TEXT:
        text = f"{text[:MAX_TEXT]} … ({len(text) - MAX_TEXT} more characters)"
    return f"<pre>{_esc(text)}</pre>"


def _figure(png: str, title: str, caption: str) -> str:
    return (
        f'<figure><h3>{_esc(title)}</h3><img src="{_esc(png)}" alt="{_esc(title)}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _page(title: str, sections: Sequence[str]) -> str:
    body = "\n".join(sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        f"<style>{CSS}</style></head>\n<body>\n<h1>{_esc(title)}</h1>\n{body}\n</body></html>\n"
    )


def _config_section(run: Run) -> str:
    if not run.config:
        return '<h2 id="config">Config</h2><p class="note">No config.json in the run directory.</p>'
    rows = [(key, value if isinstance(value, str) else json.dumps(value)) for key, value in run.config.items()]
    return '<h2 id="config">Config</h2>' + _table(["key", "value"], rows, "config")


def _summary_section(run: Run) -> str:
    steps = [int(r["step"]) for r in run.records]
    window = min(SUMMARY_WINDOW, len(steps))
    first, last = f"first {window} steps", f"last {window} steps"
    rows = [(name, _fmt(s.first), _fmt(s.last), _fmt(s.change, signed=True)) for name, s in summarize(run).items()]
    note = (
        f"{len(steps)} logged steps ({steps[0]} to {steps[-1]}). Each value is the mean of the per-step batch "
        f"mean reward over the {first} ({steps[0]} to {steps[window - 1]}) and the {last} "
        f"({steps[-window]} to {steps[-1]}); steps where the reward applied to no sample are skipped."
    )
    return (
        '<h2 id="summary">Summary</h2>'
        + _table(["reward", first, last, "change"], rows, "summary", 1)
        + f'<p class="note">{_esc(note)}</p>'
    )


def _samples_section(run: Run) -> str:
    if not run.samples:
        return '<h2 id="samples">Sample completions</h2><p class="note">No samples.jsonl in the run directory.</p>'
    logged = sorted({s["step"] for s in run.samples})
    shown = set(logged[:SAMPLE_STEPS]) | set(logged[-SAMPLE_STEPS:])
    names = list(run.reward_names)
    for sample in run.samples:
        names += [n for n in sample.get("rewards", {}) if n not in names]
    head = "".join(f"<th>{_esc(h)}</th>" for h in ["step", "prompt", "completion", *names])
    rows = []
    for sample in (s for s in run.samples if s["step"] in shown):
        cells = [
            _cell(_esc(sample["step"])),
            _cell(_text_cell(sample.get("prompt", ""))),
            _cell(_text_cell(sample["completion"])),
        ]
        cells += [_cell(_esc(_fmt(sample.get("rewards", {}).get(name))), numeric=True) for name in names]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    note = f"Logged samples of the first and last {SAMPLE_STEPS} logged steps; n/a: the reward did not apply (or abstained)."
    table = f'<table id="samples"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    return f'<h2 id="samples">Sample completions</h2><p class="note">{_esc(note)}</p>{table}'


# ---------------------------------------------------------------------- the run report
Plot = Callable[[Run, Path], "Path | None"]
REPORT_FIGURES: list[tuple[str, str, Plot, str]] = [
    (
        "rewards.png",
        "Reward means",
        lambda run, p: plots.plot_reward_means(run.records, run.reward_names, p),
        "Batch mean of each reward per step: faint points are the raw values, the solid line a trailing rolling mean.",
    ),
    (
        "advantage_share.png",
        "Advantage share",
        lambda run, p: plots.plot_advantage_share(run.records, run.reward_names, p),
        "Each reward's share of the absolute advantage mass (diag/<name>/adv_share): how much of the policy "
        "gradient signal that reward drives. A band that shrinks to nothing means the reward stopped steering "
        "the policy (solved, flat within groups, or drowned out). A step where the whole stack drops to 0 had "
        "no advantage signal at all.",
    ),
    (
        "losses.png",
        "Optimization",
        lambda run, p: plots.plot_losses(run.records, p),
        "Policy loss, KL to the reference (0 without kl_coef), token entropy, fraction of tokens clipped by "
        "the PPO ratio, gradient norm before clipping, learning rate.",
    ),
    (
        "throughput.png",
        "Throughput and step time",
        lambda run, p: plots.plot_throughput(run.records, run.reward_names, p),
        "Samples per second; seconds per step split into sampling, reward scoring and optimization (dashed: "
        "the whole step); scoring seconds per reward; mean completion length in tokens.",
    ),
    (
        "failures.png",
        "Reward failures",
        lambda run, p: plots.plot_failures(run.records, run.reward_names, p),
        "Samples per step whose reward failed (raised, timed out, or returned a non-number or inf/NaN): "
        "abstained (scored NaN, as if the reward did not apply) or fallback (scored the configured fallback value).",
    ),
    (
        "collapse.png",
        "Advantage collapse",
        lambda run, p: plots.plot_collapse(run.records, run.reward_names, p),
        "Left: distinct reward vectors vs distinct advantage values per group; the shaded gap is completions "
        "the reward model tells apart but the estimator scores the same. Middle: fraction of groups that lose "
        "such distinctions. Right: per reward, the fraction of groups where it is constant (no signal under "
        "group normalization); dashed: the estimator's own count of flat groups.",
    ),
]
GYM_FIGURES: list[tuple[str, str, Plot, str]] = [
    (
        "rewards.png",
        "Reward means",
        lambda run, p: plots.plot_reward_means(run.records, run.reward_names, p),
        "Mean reward per environment step of each component over each rollout: faint points raw, solid line a "
        "trailing rolling mean.",
    ),
    (
        "returns.png",
        "Episode returns",
        lambda run, p: plots.plot_episode_returns(run.records, run.reward_names, p),
        "Left: undiscounted return per component of the episodes that ended in each rollout. Middle: their "
        "weighted return (the bonus excluded). Right: each critic's value loss (log scale).",
    ),
    REPORT_FIGURES[1],
    (
        "losses.png",
        "Optimization",
        lambda run, p: plots.plot_losses(run.records, p, plots.GYM_LOSS_PANELS),
        "PPO policy loss, entropy, approximate KL between the rollout policy and the updated one, fraction of "
        "clipped ratios, learning rate, environment steps per second.",
    ),
]
MISSING_NOTES = {
    "returns.png": "No episode ended during the run.",
    "advantage_share.png": "The estimator reports no per-reward advantage share (no diag/<name>/adv_share metrics).",
    "failures.png": "No reward failed: every abstained and fallback count is 0.",
    "collapse.png": "No collapse diagnostics were logged.",
    "rewards.png": "No reward/<name>/mean metrics were logged.",
}


def render_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report/index.html`` and its PNGs; returns the HTML path.

    Re-rendering replaces the report's own PNGs, so the folder never holds a stale plot.
    """
    run = load_run(run_dir)
    out = run.path / "report"
    out.mkdir(exist_ok=True)
    for png, *_ in REPORT_FIGURES + GYM_FIGURES:
        (out / png).unlink(missing_ok=True)
    figures = []
    for png, title, plot, caption in GYM_FIGURES if run.is_gym else REPORT_FIGURES:
        if plot(run, out / png) is not None:
            figures.append(_figure(png, title, caption))
        elif png in MISSING_NOTES:
            figures.append(f'<h3>{_esc(title)}</h3><p class="note">{_esc(MISSING_NOTES[png])}</p>')
    sections = [_header(run), _summary_section(run), '<h2 id="plots">Plots</h2>', *figures]
    sections += ([] if run.is_gym else [_samples_section(run)]) + [_config_section(run)]
    path = out / "index.html"
    path.write_text(_page(f"polyreward run: {run.path.resolve().name}", sections), encoding="utf-8")
    return path


def _header(run: Run) -> str:
    facts = [
        ("run directory", str(run.path.resolve())),
        ("estimator", run.estimator),
        ("environment", str(run.config.get("env_id"))) if run.is_gym else ("model", str(run.config.get("model", "unknown"))),
        ("rewards", ", ".join(run.reward_names) or "none"),
    ]
    text = " · ".join(f"{_esc(key)}: <b>{_esc(value)}</b>" for key, value in facts)
    anchors = ("summary", "plots", "config") if run.is_gym else ("summary", "plots", "samples", "config")
    links = " · ".join(f'<a href="#{a}">{a}</a>' for a in anchors)
    return f'<p class="note">{text}</p><p class="note">Sections: {links}</p>'


# ---------------------------------------------------------------------- comparing runs
def run_labels(runs: Sequence[Run]) -> list[str]:
    """``<dir name> (<estimator>)``; the full path instead of the name where two names are equal."""
    paths = [run.path.resolve() for run in runs]
    names = [path.name for path in paths]
    return [
        f"{path if names.count(path.name) > 1 else path.name} ({run.estimator})"
        for run, path in zip(runs, paths, strict=True)
    ]


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path) -> Path:
    """Overlay runs: one figure per reward (one line per run) plus a summary table.

    Writes ``out_dir/index.html`` and ``out_dir/compare_*.png`` (earlier ``compare_*.png`` there are
    removed first); returns the HTML path. Every run is loaded and checked before anything is written.
    """
    if not run_dirs:
        raise ValueError("compare_runs: give at least one run directory")
    runs = [load_run(d) for d in run_dirs]
    labels = run_labels(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("compare_*.png"):
        stale.unlink()
    names = reward_names([{f"reward/{n}/mean": 0} for run in runs for n in run.reward_names])
    overlay = list(zip(labels, (run.records for run in runs), strict=True))
    figures = []
    for i, name in enumerate(names):
        png = f"compare_{i:02d}_{plots.safe_name(name)}.png"
        plots.plot_overlay(overlay, f"reward/{name}/mean", f"reward {name}: batch mean", out / png)
        figures.append(_figure(png, f"Reward {name}", "Faint: raw batch mean per step; solid: trailing rolling mean."))
    if any("diag/collapsed_groups" in record for run in runs for record in run.records):
        png = "compare_collapsed_groups.png"
        plots.plot_overlay(overlay, "diag/collapsed_groups", "fraction of groups that lose distinctions", out / png)
        caption = (
            "Groups where the estimator gives fewer distinct advantages than there are distinct reward vectors "
            "(see the run report's collapse plot); lower keeps more of what the rewards tell apart."
        )
        figures.append(_figure(png, "Advantage collapse", caption))
    sections = [_runs_section(runs, labels), _compare_summary(runs, labels, names), '<h2 id="plots">Plots</h2>', *figures]
    path = out / "index.html"
    path.write_text(_page(f"polyreward comparison of {len(runs)} runs", sections), encoding="utf-8")
    return path


def _runs_section(runs: Sequence[Run], labels: Sequence[str]) -> str:
    rows = [
        (label, str(run.path.resolve()), run.estimator, str(run.config.get("model", "")), str(len(run.records)))
        for run, label in zip(runs, labels, strict=True)
    ]
    return '<h2 id="runs">Runs</h2>' + _table(["run", "directory", "estimator", "model", "logged steps"], rows, "runs")


def _compare_summary(runs: Sequence[Run], labels: Sequence[str], names: Sequence[str]) -> str:
    rows = []
    for name in names:
        for run, label in zip(runs, labels, strict=True):
            s = summarize(run).get(name, RewardSummary(math.nan, math.nan))
            rows.append((name, label, _fmt(s.first), _fmt(s.last), _fmt(s.change, signed=True)))
    header = ["reward", "run", f"first {SUMMARY_WINDOW} steps", f"last {SUMMARY_WINDOW} steps", "change"]
    note = "Means of the per-step batch mean over each run's first and last logged steps; n/a: the run lacks that reward."
    return '<h2 id="summary">Summary</h2>' + _table(header, rows, "summary", 2) + f'<p class="note">{_esc(note)}</p>'
