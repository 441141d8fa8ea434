"""Figures of a run's ``metrics.jsonl`` records, one PNG each.

Records are the step-ordered, all-float dicts :func:`polyreward.report.load_run` returns (``null``
already NaN). Every figure is drawn on a bare :class:`matplotlib.figure.Figure` with the Agg canvas,
so nothing here touches pyplot's global state or needs a display. Reward ``k`` is drawn in colour
``C<k>`` in every figure. A function returns the PNG path, or ``None`` when its metrics are absent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

try:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
except ImportError as err:  # matplotlib is only needed for reports
    raise ImportError("polyreward's run report needs matplotlib: pip install matplotlib") from err

Records = Sequence[dict[str, float]]
LOSS_PANELS = [
    ("loss/policy", "policy loss"),
    ("loss/kl", "KL to reference"),
    ("loss/entropy", "entropy (nats/token)"),
    ("loss/clip_fraction", "clip fraction"),
    ("loss/grad_norm", "grad norm (before clipping)"),
    ("lr", "learning rate"),
]
GYM_LOSS_PANELS = [
    ("losses/policy", "policy loss"),
    ("losses/entropy", "entropy (nats)"),
    ("losses/approx_kl", "approx. KL to the rollout policy"),
    ("losses/clipfrac", "clip fraction"),
    ("charts/learning_rate", "learning rate"),
    ("charts/sps", "environment steps per second"),
]
STEP_PARTS = [("time/sample_s", "sample"), ("time/reward_s", "reward"), ("time/optimize_s", "optimize")]


def column(records: Records, key: str) -> np.ndarray:
    """``[S]`` float values of ``key`` over the records; NaN where missing or null."""
    return np.array([record.get(key, math.nan) for record in records], dtype=float)


def steps(records: Records) -> np.ndarray:
    return column(records, "step")


def smoothing_window(num_steps: int) -> int:
    """Rolling-mean window: about a tenth of the run, between 1 and 50 steps."""
    return max(1, min(50, num_steps // 10))


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` entries, ignoring NaN; NaN where the window has none."""
    padded = np.concatenate([np.full(window - 1, math.nan), np.asarray(values, dtype=float)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, window)  # [S, window]
    finite = np.isfinite(windows)
    counts = finite.sum(-1)
    sums = np.where(finite, windows, 0.0).sum(-1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), math.nan)


def safe_name(name: str) -> str:
    """``name`` reduced to file-name characters."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "metric"


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _smoothed_line(ax, x: np.ndarray, y: np.ndarray, color: str, label: str | None) -> None:
    """Raw values faint, rolling mean solid."""
    ax.plot(x, y, color=color, alpha=0.3, lw=0.8, marker=".", ms=3)
    ax.plot(x, rolling_mean(y, smoothing_window(len(y))), color=color, lw=2, label=label)


def _style(ax, title: str, ylabel: str | None = None) -> None:
    """Shared look: small title, light grid, whole-number steps, plain tick labels (no offset)."""
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="y", useOffset=False)
    if ylabel:
        ax.set_ylabel(ylabel)


def _panel(ax, x: np.ndarray, y: np.ndarray, title: str) -> None:
    _style(ax, title)
    if not np.isfinite(y).any():
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="grey")
        return
    _smoothed_line(ax, x, y, "C0", None)


def plot_reward_means(records: Records, names: list[str], path: Path) -> Path | None:
    """One line per reward: ``reward/<name>/mean`` raw (faint) and rolling mean (solid)."""
    if not names:
        return None
    fig = Figure(figsize=(9, 4.5))
    ax = fig.add_subplot()
    x = steps(records)
    for k, name in enumerate(names):
        _smoothed_line(ax, x, column(records, f"reward/{name}/mean"), f"C{k % 10}", name)
    window = smoothing_window(len(records))
    _style(ax, f"reward means (solid: rolling mean over {window} steps)", "batch mean reward")
    ax.set_xlabel("step")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def plot_advantage_share(records: Records, names: list[str], path: Path) -> Path | None:
    """Stacked ``diag/<name>/adv_share``; ``None`` when the estimator reports no shares."""
    shares = np.stack([column(records, f"diag/{name}/adv_share") for name in names]) if names else np.zeros((0, 0))
    if not np.isfinite(shares).any():
        return None
    fig = Figure(figsize=(9, 4))
    ax = fig.add_subplot()
    colors = [f"C{k % 10}" for k in range(len(names))]
    ax.stackplot(steps(records), np.nan_to_num(shares, nan=0.0), labels=names, colors=colors, alpha=0.8)
    _style(ax, "advantage share per reward (stacked)", "share of |advantage|")
    ax.set(xlabel="step", ylim=(0, 1.02))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _save(fig, path)


def plot_losses(records: Records, path: Path, panels: Sequence[tuple[str, str]] = LOSS_PANELS) -> Path:
    """Six panels ``(metric key, title)``: by default the language-model trainer's policy loss, KL,
    entropy, clip fraction, grad norm and learning rate (:data:`GYM_LOSS_PANELS` for PPO)."""
    fig = Figure(figsize=(12, 6), layout="constrained")
    x = steps(records)
    for ax, (key, title) in zip(fig.subplots(2, 3).flat, panels, strict=True):
        _panel(ax, x, column(records, key), title)
    fig.supxlabel("step")
    return _save(fig, path)


def plot_episode_returns(records: Records, names: list[str], path: Path) -> Path | None:
    """Gym runs: ``reward/<name>/episodic_return`` per component, the weighted return
    ``charts/episodic_return`` and each critic's value loss ``losses/value_<critic>``."""
    if not any(key == "charts/episodic_return" for record in records for key in record):
        return None
    fig = Figure(figsize=(14, 4), layout="constrained")
    per_component, weighted, value = fig.subplots(1, 3)
    x = steps(records)
    for k, name in enumerate(names):
        _smoothed_line(per_component, x, column(records, f"reward/{name}/episodic_return"), f"C{k % 10}", name)
    _style(per_component, "episode return per component", "undiscounted return")
    per_component.legend(fontsize=8)
    _panel(weighted, x, column(records, "charts/episodic_return"), "weighted episode return (sum_k w_k R_k)")
    critics = sorted({key for record in records for key in record if key.startswith("losses/value_")})
    for k, key in enumerate(critics):
        value.plot(x, column(records, key), color=f"C{k % 10}", lw=1.2, label=key.removeprefix("losses/value_"))
    _style(value, "value loss per critic")
    if critics:
        value.set_yscale("log")
        value.legend(fontsize=8)
    fig.supxlabel("environment step")
    return _save(fig, path)


def plot_throughput(records: Records, names: list[str], path: Path) -> Path:
    """Samples/s, step-time breakdown, per-reward scoring time and completion length."""
    fig = Figure(figsize=(12, 7), layout="constrained")
    (rate, parts), (per_reward, tokens) = fig.subplots(2, 2)
    x = steps(records)
    _panel(rate, x, column(records, "time/samples_per_s"), "samples per second")
    _stacked_times(parts, x, [(column(records, k), label) for k, label in STEP_PARTS], "step time by stage (s)")
    total = column(records, "time/step_s")
    if np.isfinite(total).any():
        parts.plot(x, total, color="black", lw=1, ls="--", label="whole step")
        parts.legend(fontsize=8, loc="upper left")
    reward_times = [(column(records, f"time/reward/{name}_s"), name) for name in names]
    _stacked_times(per_reward, x, reward_times, "scoring time per reward (s)", colored_by_reward=True)
    _panel(tokens, x, column(records, "completion_tokens/mean"), "tokens per completion (mean)")
    fig.supxlabel("step")
    return _save(fig, path)


def _stacked_times(ax, x, series: list[tuple[np.ndarray, str]], title: str, colored_by_reward: bool = False) -> None:
    _style(ax, title)
    present = [(y, label, k) for k, (y, label) in enumerate(series) if np.isfinite(y).any()]
    if not present:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="grey")
        return
    colors = [f"C{k % 10}" if colored_by_reward else f"C{k + 1}" for _, _, k in present]
    ys = np.nan_to_num(np.stack([y for y, _, _ in present]), nan=0.0)
    ax.stackplot(x, ys, labels=[label for _, label, _ in present], colors=colors, alpha=0.8)
    ax.legend(fontsize=8, loc="upper left")


def plot_failures(records: Records, names: list[str], path: Path) -> Path | None:
    """Abstained (solid) and fallback (dashed) sample counts per reward; ``None`` when all are 0."""
    lines = []
    for k, name in enumerate(names):
        for kind, style in (("abstained", "-"), ("fallback", "--")):
            y = column(records, f"reward/{name}/{kind}")
            if np.nansum(np.abs(y)) > 0:
                lines.append((y, f"{name} {kind}", f"C{k % 10}", style))
    if not lines:
        return None
    fig = Figure(figsize=(9, 4))
    ax = fig.add_subplot()
    x = steps(records)
    for y, label, color, style in lines:
        ax.plot(x, y, color=color, ls=style, marker=".", label=label)
    _style(ax, "reward failures per step (abstained: scored NaN; fallback: scored the fallback value)", "failed samples")
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_collapse(records: Records, names: list[str], path: Path) -> Path | None:
    """Distinct reward vectors vs distinct advantages per group, lost distinctions, zero-variance groups."""
    vectors, advs = column(records, "diag/distinct_reward_vectors"), column(records, "diag/distinct_advantages")
    zero_var = [(column(records, f"diag/{name}/zero_var_groups"), name, f"C{k % 10}") for k, name in enumerate(names)]
    estimator_keys = sorted(
        {key for record in records for key in record if re.fullmatch(r"diag/.+/zero_variance_groups", key)}
    )
    if not (np.isfinite(vectors).any() or any(np.isfinite(y).any() for y, _, _ in zero_var)):
        return None
    fig = Figure(figsize=(14, 4), layout="constrained")
    distinct, lost, flat = fig.subplots(1, 3)
    x = steps(records)
    distinct.plot(x, vectors, color="C0", lw=1.5, label="distinct reward vectors")
    distinct.plot(x, advs, color="C3", lw=1.5, label="distinct advantages")
    distinct.fill_between(x, advs, vectors, color="C3", alpha=0.25, label="lost distinctions")
    _style(distinct, "per group (mean over groups)", "count")
    distinct.legend(fontsize=8)
    _panel(lost, x, column(records, "diag/collapsed_groups"), "fraction of groups that lose distinctions")
    for y, name, color in zero_var:
        flat.plot(x, y, color=color, lw=1.2, marker=".", ms=3, label=name)
    for key in estimator_keys:
        estimator = key.removeprefix("diag/").removesuffix("/zero_variance_groups")
        flat.plot(x, column(records, key), color="black", ls="--", lw=1.5, label=f"{estimator} (estimator's count)")
    _style(flat, "zero-variance groups (fraction)")
    flat.set_ylim(-0.03, 1.03)
    flat.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.supxlabel("step")
    return _save(fig, path)


def plot_overlay(runs: list[tuple[str, Records]], key: str, title: str, path: Path) -> Path:
    """One line per run for metric ``key`` (raw faint, rolling mean solid); runs without it are skipped."""
    fig = Figure(figsize=(9, 4.5))
    ax = fig.add_subplot()
    for i, (label, records) in enumerate(runs):
        y = column(records, key)
        if np.isfinite(y).any():
            _smoothed_line(ax, steps(records), y, f"C{i % 10}", label)
    _style(ax, title, key)
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    return _save(fig, path)
