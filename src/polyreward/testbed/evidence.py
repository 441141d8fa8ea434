"""Running a claim over seeds and arms: t-intervals, paired effects, verdicts, JSON and a curves plot.

An experiment is a task, named arms (:class:`~polyreward.testbed.train.TrainConfig`) that differ
only in how rewards become advantages, seeds, and the comparisons that test the claim. Every arm
runs on every seed; seed ``s`` gives every arm the same initial weights, and the same prompts
until the sampled completions diverge, so effects are paired differences over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from polyreward.testbed.tasks import Task
from polyreward.testbed.train import TrainConfig, train

# two-sided 95% Student-t quantiles t_{0.975, df}, df = 1..30
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131]
_T975 += [2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t_interval(values: Sequence[float]) -> dict[str, float]:
    """Mean and 95% t-interval over seeds: ``mean ± t_{0.975, n-1} * sd / sqrt(n)`` (sd with ddof = 1).

    NaN values (a metric a run did not produce) are left out and ``n`` counts the rest; one value
    gives an interval of NaN (nothing to estimate the spread from), none a NaN mean.
    """
    values = [v for v in values if not math.isnan(v)]
    n = len(values)
    if n == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    mean = statistics.fmean(values)
    if n == 1:
        return {"mean": mean, "low": math.nan, "high": math.nan, "n": 1}
    q = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    half = q * statistics.stdev(values) / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


@dataclasses.dataclass(frozen=True)
class Comparison:
    """``a`` minus ``b`` on ``metric``, paired by seed; ``better="lower"`` for costs (tool calls, length)."""

    a: str
    b: str
    metric: str
    better: str = "higher"


def paired_effect(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Mean and 95% t-interval of the per-seed differences ``a[s] - b[s]``."""
    if len(a) != len(b):
        raise ValueError(f"paired_effect: {len(a)} values against {len(b)}; pair them by seed")
    return t_interval([x - y for x, y in zip(a, b, strict=True)])


def verdict(comparison: Comparison, effect: dict[str, float]) -> str:
    """One line from the interval: which arm is better on the metric, or no significant difference."""
    c, e = comparison, effect
    numbers = f"{e['mean']:+.3f} [{e['low']:+.3f}, {e['high']:+.3f}] (n = {e['n']} seeds)"
    if math.isnan(e["low"]) or e["low"] <= 0 <= e["high"]:
        return f"{c.a} vs {c.b}, {c.metric}: no significant difference, {numbers}"
    sign = ">" if e["mean"] > 0 else "<"
    good = (e["mean"] > 0) == (c.better == "higher")
    return f"{c.a} {sign} {c.b} on {c.metric} ({'better' if good else 'worse'}): {numbers}"


def run_arms(
    task: Task, arms: dict[str, TrainConfig], seeds: Sequence[int], curve_metrics: Sequence[str], progress: bool = True
) -> tuple[dict, dict, float]:
    """Train every arm on every seed. Returns ``(final, curves, seconds)``:
    ``final[arm][metric] = [per seed]`` (final evaluation, plus ``train_mean/<metric>``, the average
    over the training updates), ``curves[arm][metric] = [[per update] per seed]``."""
    final: dict[str, dict[str, list[float]]] = {}
    curves: dict[str, dict[str, list[list[float]]]] = {}
    start = time.perf_counter()
    for arm, base in arms.items():
        final[arm], curves[arm] = {}, {m: [] for m in curve_metrics}
        for seed in seeds:
            run_start = time.perf_counter()
            result = train(task, dataclasses.replace(base, seed=seed))
            for metric, value in result.final.items():
                final[arm].setdefault(metric, []).append(value)
            for metric in curve_metrics:  # the training average: how fast, not only where it ends
                values = [h[metric] for h in result.history if metric in h]
                final[arm].setdefault(f"train_mean/{metric}", []).append(statistics.fmean(values) if values else math.nan)
            for metric in curve_metrics:
                curves[arm][metric].append([round(h.get(metric, math.nan), 4) for h in result.history])
            if progress:
                shown = ", ".join(f"{m}={result.final.get(m, math.nan):.3f}" for m in curve_metrics)
                print(f"  {arm:>16} seed {seed}: {shown} ({time.perf_counter() - run_start:.1f} s)", flush=True)
    return final, curves, time.perf_counter() - start


def report(
    claim: str,
    command: str,
    task: Task,
    arms: dict[str, TrainConfig],
    seeds: Sequence[int],
    comparisons: Sequence[Comparison],
    curve_metrics: Sequence[str],
    notes: str = "",
    progress: bool = True,
) -> dict:
    """Run the experiment and return its JSON-ready report (per-seed numbers, intervals, verdicts)."""
    final, curves, seconds = run_arms(task, arms, seeds, curve_metrics, progress)
    return {
        "claim": claim,
        "command": command,
        "notes": notes,
        "task": {"name": task.name, **dataclasses.asdict(task)},
        "arms": {name: dataclasses.asdict(cfg) for name, cfg in arms.items()},
        "seeds": list(seeds),
        **outcome(final, comparisons, curves, seconds),
    }


def outcome(final: dict, comparisons: Sequence[Comparison], curves: dict, seconds: float) -> dict:
    """The measured part of a report: per-seed ``final`` numbers, their ``summary`` intervals, the
    paired ``comparisons`` and their ``verdicts``, the ``curves``, the ``seconds`` and the environment."""
    results = compare(final, comparisons)
    return {
        "final": final,
        "summary": summarize(final),
        "comparisons": results,
        "verdicts": [r["verdict"] for r in results],
        "curves": curves,
        "seconds": seconds,
        "environment": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
        },
    }


def summarize(final: dict) -> dict:
    """Mean and 95% t-interval of every ``final[arm][metric]`` list of per-seed numbers."""
    return {arm: {m: t_interval(v) for m, v in metrics.items()} for arm, metrics in final.items()}


def compare(final: dict, comparisons: Sequence[Comparison]) -> list[dict]:
    """Paired effect and verdict of each comparison, from the per-seed numbers ``final[arm][metric]``."""
    results = []
    for c in comparisons:
        effect = paired_effect(final[c.a][c.metric], final[c.b][c.metric])
        results.append(dataclasses.asdict(c) | {"effect": effect, "verdict": verdict(c, effect)})
    return results


def plot(report: dict, path: Path, metrics: Sequence[str], smooth: int = 10, xlabel: str = "update") -> None:
    """One panel per metric: the training curve of each arm, mean over seeds with a 95% t band
    (moving average over ``smooth`` updates), and the final-evaluation interval as an error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, (arm, arm_curves) in enumerate(report["curves"].items()):
            runs = [_moving_average(c, smooth) for c in arm_curves[metric]]
            steps = range(len(runs[0]))
            bands = [t_interval([r[s] for r in runs]) for s in steps]
            color = f"C{i}"
            ax.plot(steps, [b["mean"] for b in bands], color=color, label=arm)
            if len(runs) > 1:
                ax.fill_between(steps, [b["low"] for b in bands], [b["high"] for b in bands], color=color, alpha=0.2)
            end = report["summary"][arm].get(metric)
            if end is not None and not math.isnan(end["low"]):
                x = len(runs[0]) * (1.02 + 0.02 * i)
                ax.errorbar([x], [end["mean"]], yerr=[[end["mean"] - end["low"]], [end["high"] - end["mean"]]],
                            color=color, fmt="o", ms=3, capsize=2)  # fmt: skip
        ax.set_title(metric)
        ax.set_xlabel(f"{xlabel} (dots: final eval, 95% CI)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{report['claim']} ({len(report['seeds'])} seeds, mean ± 95% t-interval)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _moving_average(values: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def parse_args(
    description: str, default_out: Path, default_seeds: int = 8, variants: Sequence[str] = ()
) -> argparse.Namespace:
    """``--out DIR`` (results folder), ``--seeds N``, ``--smoke`` (2 seeds, a few updates) and, when the
    script has more than one, ``--variant NAME`` (``default`` or one of ``variants``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=default_out, help="results folder")
    parser.add_argument("--seeds", type=int, default=default_seeds, help="seeds per arm")
    parser.add_argument("--smoke", action="store_true", help="2 seeds x 3 updates: checks the script runs")
    if variants:
        parser.add_argument("--variant", choices=["default", *variants], default="default", help="testbed variant")
    args = parser.parse_args()
    if args.smoke:
        args.seeds = 2
    return args


def smoke(config: TrainConfig) -> TrainConfig:
    """The seconds-long version of an arm for ``--smoke``."""
    return dataclasses.replace(
        config, steps=3, prompts_per_step=4, eval_prompts=8, pretrain_steps=min(config.pretrain_steps, 3)
    )


def write(report: dict, out: Path, name: str, metrics: Sequence[str], smooth: int = 10, xlabel: str = "update") -> None:
    """``out/name.json`` and ``out/name.png`` (:func:`plot`); prints the verdicts."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=1))
    plot(report, out / f"{name}.png", metrics, smooth, xlabel)
    for line in report["verdicts"]:
        print(line)
    print(f"wrote {out / name}.json and .png ({report['seconds']:.0f} s)")


def run_script(
    name: str,
    claim: str,
    description: str,
    task: Task,
    arms: dict[str, TrainConfig],
    comparisons: Sequence[Comparison],
    metrics: Sequence[str],
    default_out: Path,
    notes: str = "",
    variants: dict[str, dict] | None = None,
) -> dict:
    """The whole of an ``evidence_*.py`` command: arguments, one thread, the runs, JSON + PNG.

    ``variants``: ``{variant: overrides}`` selected by ``--variant``; the overrides replace any of
    ``name``, ``claim``, ``task``, ``arms``, ``comparisons``, ``metrics``, ``notes`` (a variant writes
    its own ``name``, so it never overwrites the default experiment's results).
    """
    import sys

    torch.set_num_threads(1)
    args = parse_args(description, default_out, variants=tuple(variants or ()))
    chosen = (variants or {}).get(getattr(args, "variant", "default"), {})
    unknown = set(chosen) - {"name", "claim", "task", "arms", "comparisons", "metrics", "notes"}
    if unknown:
        raise ValueError(f"run_script: unknown variant overrides {sorted(unknown)}")
    name, claim, task = chosen.get("name", name), chosen.get("claim", claim), chosen.get("task", task)
    arms, comparisons = chosen.get("arms", arms), chosen.get("comparisons", comparisons)
    metrics, notes = chosen.get("metrics", metrics), chosen.get("notes", notes)
    if args.smoke:
        arms = {k: smoke(v) for k, v in arms.items()}
    result = report(claim, " ".join(sys.argv), task, arms, range(args.seeds), comparisons, metrics, notes)
    write(result, args.out, name, metrics)
    return result
