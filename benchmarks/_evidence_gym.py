"""Gym-side evidence runs (claims 6-8): arms x seeds of ``polyreward.gym.PPO``, curves, intervals, plot.

The statistics (95% t-intervals, paired effects, one-line verdicts, ``--out/--seeds/--smoke``) come
from :mod:`polyreward.testbed.evidence`, the language-model claims' module; this file adds what
differs for environments: an arm is a ``GymConfig`` plus a number of env steps, curves are indexed
by env steps and come from the trainer's per-update metrics, and the final numbers come from a
claim-specific ``evaluate(ppo, history) -> {metric: value}``.

Every arm runs on every seed; seed ``s`` gives every arm the same initial weights and env resets
(``GymConfig.seed``), so effects are paired differences over seeds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from polyreward.config import to_mapping
from polyreward.gym import PPO, GymConfig
from polyreward.testbed import evidence as ev

Evaluate = Callable[[PPO, list[dict[str, float]]], dict[str, float]]


@dataclasses.dataclass(frozen=True)
class Arm:
    """One arm: the trainer config (its ``seed`` and ``output_dir`` are set per run), env steps, and
    the ``group`` (task) it belongs to, which picks its row in the plot."""

    config: GymConfig
    steps: int
    group: str = ""


def run_seed(arm: Arm, seed: int, curve_metrics: Sequence[str], evaluate: Evaluate) -> tuple[dict, dict, list[int]]:
    """Train ``arm`` with ``seed``; returns ``(final, curves, steps)``: ``final[metric]`` from
    ``evaluate``; ``curves[metric][update]`` of the trainer's metrics plus ``losses/value_sum`` (the
    value losses of all critics, each in its own component's units), where a metric missing from an
    update (no episode ended) repeats the previous value (NaN before the first one); the env steps
    at each update."""
    history: list[dict[str, float]] = []
    steps: list[int] = []

    def record(ppo: PPO, metrics: dict[str, float]) -> None:
        value_losses = [v for k, v in metrics.items() if k.startswith("losses/value_")]
        history.append(metrics | {"losses/value_sum": float(sum(value_losses))})
        steps.append(ppo.global_step)

    with tempfile.TemporaryDirectory(prefix="evidence-") as run_dir:
        config = dataclasses.replace(arm.config, seed=seed, output_dir=run_dir, tensorboard=False, threads=1)
        ppo = PPO(config.env_id, config).learn(arm.steps, callback=record, progress=False)
        try:
            final = evaluate(ppo, history)
        finally:
            ppo.env.close()
    curves = {m: _forward_fill([h.get(m, math.nan) for h in history]) for m in curve_metrics}
    return final, curves, steps


def _forward_fill(values: Sequence[float]) -> list[float]:
    out, last = [], math.nan
    for v in values:
        last = v if not math.isnan(v) else last
        out.append(round(float(last), 5))
    return out


def report(
    claim: str,
    command: str,
    arms: dict[str, Arm],
    seeds: Sequence[int],
    comparisons: Sequence[ev.Comparison],
    curve_metrics: Sequence[str],
    evaluate: Evaluate,
    notes: str = "",
) -> dict:
    """Run every arm on every seed; the JSON-ready report: per-seed ``final`` numbers, ``summary``
    (mean and 95% t-interval per arm and metric), paired ``comparisons`` with verdicts, ``curves``."""
    final: dict[str, dict[str, list[float]]] = {}
    curves: dict[str, dict[str, list[list[float]]]] = {}
    curve_steps: dict[str, list[int]] = {}
    start = time.perf_counter()
    for name, arm in arms.items():
        final[name], curves[name] = {}, {m: [] for m in curve_metrics}
        for seed in seeds:
            run_start = time.perf_counter()
            numbers, arm_curves, curve_steps[name] = run_seed(arm, seed, curve_metrics, evaluate)
            for metric, value in numbers.items():  # rounded: float noise must not look like an effect
                final[name].setdefault(metric, []).append(round(float(value), 6))
            for metric, values in arm_curves.items():
                curves[name][metric].append(values)
            shown = ", ".join(f"{m}={v:.3f}" for m, v in numbers.items())
            print(f"  {name:>24} seed {seed}: {shown} ({time.perf_counter() - run_start:.1f} s)", flush=True)
    return {
        "claim": claim,
        "command": command,
        "notes": notes,
        "arms": {name: {"steps": a.steps, "group": a.group, "config": to_mapping(a.config)} for name, a in arms.items()},
        "seeds": list(seeds),
        "curve_steps": curve_steps,
        **ev.outcome(final, comparisons, curves, time.perf_counter() - start),
    }


def plot(report: dict, path: Path, metrics: Sequence[str], smooth: int = 5, log: Sequence[str] = ()) -> None:
    """One row per arm group (task), one column per curve metric: each arm's curve against env steps,
    mean over seeds with a 95% t band (moving average over ``smooth`` updates); metrics in ``log`` on
    a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(a["group"] for a in report["arms"].values()))
    fig, axes = plt.subplots(len(groups), len(metrics), figsize=(4.4 * len(metrics), 3.3 * len(groups)), squeeze=False)
    for row, group in zip(axes, groups, strict=True):
        names = [n for n, a in report["arms"].items() if a["group"] == group]
        for ax, metric in zip(row, metrics, strict=True):
            for i, name in enumerate(names):
                runs = np.array([_moving_average(c, smooth) for c in report["curves"][name][metric]])
                steps = report["curve_steps"][name]
                bands = [ev.t_interval(list(runs[:, s])) for s in range(runs.shape[1])]
                ax.plot(steps, [b["mean"] for b in bands], color=f"C{i}", label=name.split("/")[-1])
                if runs.shape[0] > 1:
                    low, high = [b["low"] for b in bands], [b["high"] for b in bands]
                    ax.fill_between(steps, low, high, color=f"C{i}", alpha=0.2)
            ax.set_title(f"{group}: {metric}" if group else metric, fontsize=9)
            ax.set_xlabel("env steps")
            if metric in log:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    fig.suptitle(f"{report['claim']} ({len(report['seeds'])} seeds, mean ± 95% t-interval)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over ``window`` values, ignoring NaN (NaN while none is known yet)."""
    out = []
    for i in range(len(values)):
        known = [v for v in values[max(0, i - window + 1) : i + 1] if not math.isnan(v)]
        out.append(sum(known) / len(known) if known else math.nan)
    return out


def write(report: dict, out: Path, name: str, metrics: Sequence[str], log: Sequence[str] = ()) -> None:
    """``out/name.json`` and ``out/name.png``; prints the verdicts."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=1))
    plot(report, out / f"{name}.png", metrics, log=log)
    for line in report["verdicts"]:
        print(line)
    print(f"wrote {out / name}.json and .png ({report['seconds']:.0f} s)")


def area_under_curve(history: list[dict[str, float]], metric: str) -> float:
    """Mean of ``metric`` over the updates that logged it (NaN if none did): the training-curve average."""
    values = [h[metric] for h in history if metric in h]
    return float(np.mean(values)) if values else math.nan


def first_step_at(history: list[dict[str, float]], steps_per_update: int, metric: str, threshold: float) -> float:
    """Env steps at the end of the first update whose ``metric`` reached ``threshold`` (the run's
    length plus one update when it never did, so that every seed has a number)."""
    for i, h in enumerate(history):
        if h.get(metric, -math.inf) >= threshold:
            return float((i + 1) * steps_per_update)
    return float((len(history) + 1) * steps_per_update)
