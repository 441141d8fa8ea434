"""Claim 1 on a real language model: GDPO vs GRPO on SmolLM2-135M-Instruct.

Two variants, each with three rewards of different scale and difficulty (correctness, format, length):

- ``arithmetic`` (claim 1b): the built-in arithmetic task of the default job, rewards ``correct``
  (hard, 0/1), ``answer_format`` (easy, 0 / 0.5 / 1) and ``brevity`` (1 up to 8 tokens, 0 at 32).
- ``chain_sum`` (claim 1c): reasoning-gym's ``chain_sum`` with two single-digit terms (``a ± b``,
  negative answers included), its own verifier ``reasoning_gym`` (0/1), ``format`` (``<answer>`` tags,
  0/1) and DAPO's ``overlong`` length penalty (0 up to 12 tokens, falling to -1 at 24). SmolLM2-135M
  scores 0 correct and 0 format greedy on it, so each seed first gets ``--warmup`` steps of pure SFT
  on ``<answer>{answer}</answer>`` (the ``amft`` controller with mu pinned to 1), shared by both arms:
  the arms start from the same warmed-up weights.

Arms: ``gdpo`` and ``grpo``, everything else the default job's config, ``steps`` optimizer steps per
run, seeds paired. Evaluation after training: greedy completions on 64 prompts drawn with a seed no
run trained on; **joint success** = every reward at its best value on the same completion;
per-reward means; the training curves of the per-reward batch means. Effects are paired differences
over seeds with 95 % t-intervals. Each finished run's evaluation is kept under ``runs/`` so an
interrupted benchmark continues where it stopped.

    .venv/bin/python benchmarks/evidence_gdpo_smollm2.py             # ~3 min per run on 2 cores
    .venv/bin/python benchmarks/evidence_gdpo_smollm2.py --first-seed 3 --seeds 5 --merge   # add seeds 3..7
    .venv/bin/python benchmarks/evidence_gdpo_smollm2.py --variant chain_sum
    .venv/bin/python benchmarks/evidence_gdpo_smollm2.py --smoke --out /tmp/x
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from _evidence_lm import EVAL_SEED, evaluate_joint

from polyreward.checkpoint import latest_checkpoint
from polyreward.lm.config import TrainConfig
from polyreward.lm.model import load_policy
from polyreward.lm.run import train
from polyreward.report import load_run
from polyreward.testbed import evidence as ev

ARMS = ("gdpo", "grpo")


@dataclasses.dataclass(frozen=True)
class Variant:
    """A task with its rewards; ``best``: each reward's best value (joint success = all of them)."""

    name: str
    claim: str
    config: dict[str, Any]
    best: dict[str, float]
    warmup: int = 0  # default SFT warm-up steps before RL
    warmup_lr: float = 1e-4


VARIANTS = {
    "arithmetic": Variant(
        "evidence_gdpo_smollm2",
        "Claim 1 on SmolLM2-135M: GDPO vs GRPO with correctness + format + length rewards",
        {},
        {"correct": 1.0, "answer_format": 1.0, "brevity": 1.0},
    ),
    "chain_sum": Variant(
        "evidence_gdpo_smollm2_chain_sum",
        "Claim 1 on SmolLM2-135M with a reasoning-gym task (chain_sum, after an SFT warm-up): GDPO vs GRPO",
        {
            "task": "reasoning_gym:chain_sum",
            "task_params": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
            "rewards": [
                {"kind": "reasoning_gym"},
                {"kind": "format", "params": {"tags": ["answer"]}},
                {"kind": "overlong", "params": {"max_length": 24, "cache_length": 12}},
            ],
        },
        {"reasoning_gym": 1.0, "format": 1.0, "overlong": 0.0},
        warmup=8,
        warmup_lr=1e-4,
    ),
}


def metrics_of(variant: Variant) -> list[str]:
    return ["eval/joint", *(f"eval/{name}" for name in variant.best)]


def evaluate_model(model_dir: str, config: TrainConfig, prompts: int, best: dict[str, float]) -> dict[str, float]:
    """:func:`evaluate_joint` of the model saved in ``model_dir``."""
    model, tokenizer = load_policy(model_dir, config.dtype, config.device)
    return evaluate_joint(model, tokenizer, config, prompts, best)


def warm_up(variant: Variant, seed: int, steps: int, root: Path, threads: int) -> str:
    """Model directory after ``steps`` of pure SFT on the task's answers (mu pinned to 1), or the base model."""
    if steps == 0:
        return TrainConfig().model
    sft = {"kind": "amft", "params": {"demonstration": "<answer>{answer}</answer>", "warmup_steps": 0}}
    sft["params"].update(mu_init=1.0, mu_min=1.0, mu_max=1.0, meta_lr=0.0, entropy_lr=0.0)
    run_dir = root / f"warmup{steps}-lr{variant.warmup_lr:g}-{seed}"
    if not (run_dir / "checkpoints").exists():
        shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted warm-up: start it again
        config = TrainConfig(
            **variant.config,
            seed=seed,
            steps=steps,
            learning_rate=variant.warmup_lr,
            save_every=0,
            output_dir=str(run_dir),
            controllers=[sft],
            threads=threads,
        )
        train(config, progress=False)
    return str(latest_checkpoint(run_dir) / "model")


def run_arm(variant: Variant, arm: str, seed: int, steps: int, prompts: int, model: str, root: Path, threads: int) -> dict:
    """Train one arm and evaluate it; the result (final metrics and curves) is cached in its run
    directory and reused only by a run with the same settings."""
    run_dir = root / f"{arm}-{seed}"
    cached = run_dir / "evidence_result.json"
    settings = {"steps": steps, "prompts": prompts, "model": model, "length_unit": "tokens"}
    if cached.exists() and json.loads(cached.read_text())["settings"] == settings:
        return json.loads(cached.read_text())
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an interrupted run: start it again
    config = TrainConfig(**variant.config, model=model, estimator=arm, seed=seed, steps=steps, save_every=0, threads=threads)
    config = dataclasses.replace(config, output_dir=str(run_dir))
    train(config, progress=False)
    final = evaluate_model(str(latest_checkpoint(run_dir) / "model"), config, prompts, variant.best)
    shutil.rmtree(run_dir / "checkpoints")  # ~0.5 GB of weights per run
    records = load_run(run_dir).records
    curves = {f"reward/{n}/mean": [r.get(f"reward/{n}/mean", math.nan) for r in records] for n in variant.best}
    result = {"settings": settings, "final": final, "curves": curves}
    cached.write_text(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="arithmetic")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds to run")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--merge", action="store_true", help="add these seeds to the stored result (same setup)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=None, help="SFT warm-up steps (default: the variant's)")
    parser.add_argument("--prompts", type=int, default=64, help="held-out prompts of the evaluation")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default)")
    parser.add_argument("--smoke", action="store_true", help="1 seed, 2 steps (1 warm-up), 8 prompts")
    args = parser.parse_args()
    variant = VARIANTS[args.variant]
    warmup = variant.warmup if args.warmup is None else args.warmup
    count, steps, prompts = (1, 2, 8) if args.smoke else (args.seeds, args.steps, args.prompts)
    warmup = min(warmup, 1) if args.smoke else warmup
    seeds = list(range(args.first_seed, args.first_seed + count))
    name = variant.name if warmup == variant.warmup else f"{variant.name}_warmup{warmup}"  # results of each warm-up apart
    runs_root = Path(__file__).resolve().parents[1] / "runs" / (name + ("-smoke" if args.smoke else ""))
    metrics = metrics_of(variant)
    final: dict[str, dict[str, list[float]]] = {arm: {m: [] for m in metrics} for arm in ARMS}
    curves: dict[str, dict[str, list[list[float]]]] = {arm: {} for arm in ARMS}
    warmed: dict[int, dict[str, float]] = {}  # seed -> evaluation of the warmed-up model both arms start from
    started = time.perf_counter()
    for seed in seeds:
        model = warm_up(variant, seed, warmup, runs_root, args.threads)
        if warmup:
            start = evaluate_model(model, TrainConfig(**variant.config), prompts, variant.best)
            warmed[seed] = start
            print(f"after {warmup} SFT steps, seed {seed}: {start}", flush=True)
        for arm in ARMS:
            result = run_arm(variant, arm, seed, steps, prompts, model, runs_root, args.threads)
            for metric in metrics:
                final[arm][metric].append(result["final"][metric])
            for key, series in result["curves"].items():
                curves[arm].setdefault(key, []).append(series)
            print(f"{arm:>5} seed {seed}: " + ", ".join(f"{m}={result['final'][m]:.3f}" for m in metrics), flush=True)
    setup = {"steps": steps, "warmup": warmup, "eval_prompts": prompts, "eval_seed": EVAL_SEED}
    seconds = time.perf_counter() - started
    threads = [args.threads or torch.get_num_threads()] * len(seeds)
    if args.merge:
        final, curves, seeds, seconds, threads = _merge(
            args.out / f"{name}.json", setup, final, curves, seeds, seconds, threads
        )
    comparisons = ev.compare(final, [ev.Comparison("gdpo", "grpo", m) for m in metrics])
    print("\n".join(c["verdict"] for c in comparisons))
    report = {
        "claim": variant.claim,
        "command": f"benchmarks/evidence_gdpo_smollm2.py --variant {args.variant} --warmup {warmup}"
        + (" --smoke" if args.smoke else ""),
        "setup": {
            **setup,
            "seeds": len(seeds),
            "seed_list": seeds,
            "threads_per_seed": threads,
            **variant.config,
        },
        "after_warmup": {**(_stored(args.out / f"{name}.json").get("after_warmup", {}) if args.merge else {}), **warmed},
        "final": final,
        "summary": ev.summarize(final),
        "comparisons": comparisons,
        "verdicts": [c["verdict"] for c in comparisons],
        "curves": curves,
        "seconds": seconds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2))
    _plot(report, list(variant.best), args.out / f"{name}.png")


def _stored(path: Path) -> dict:
    return json.loads(path.read_text())


def _merge(path: Path, setup: dict, final: dict, curves: dict, seeds: list[int], seconds: float, threads: list[int]):
    """The stored runs of ``path`` followed by these ones; the setups must match and no seed may repeat."""
    stored = _stored(path)
    old = stored["setup"]
    old_seeds = old.get("seed_list", list(range(old["seeds"])))
    mismatched = {k: (v, old.get(k)) for k, v in setup.items() if old.get(k, 0) != v}  # no "warmup" stored: 0
    if mismatched:
        raise ValueError(f"{path}: stored setup differs (now, stored): {mismatched}; cannot merge")
    if set(old_seeds) & set(seeds):
        raise ValueError(f"{path}: seeds {sorted(set(old_seeds) & set(seeds))} are already stored")
    merged_final = {arm: {m: stored["final"][arm][m] + v for m, v in final[arm].items()} for arm in ARMS}
    merged_curves = {arm: {k: stored["curves"][arm][k] + v for k, v in curves[arm].items()} for arm in ARMS}
    old_threads = old.get("threads_per_seed", [old.get("threads")] * len(old_seeds))
    return merged_final, merged_curves, old_seeds + seeds, stored["seconds"] + seconds, old_threads + threads


def _plot(report: dict, names: list[str], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.8), layout="constrained")
    for ax, name in zip(fig.subplots(1, len(names)), names, strict=True):
        for i, arm in enumerate(ARMS):
            series = torch.tensor(report["curves"][arm][f"reward/{name}/mean"], dtype=torch.float64)  # [seeds, steps]
            mean = series.nanmean(0)
            spread = series.std(0) if series.shape[0] > 1 else torch.zeros_like(mean)
            x = range(len(mean))
            ax.plot(x, mean, color=f"C{i}", label=arm)
            ax.fill_between(x, mean - spread, mean + spread, color=f"C{i}", alpha=0.2)
        ax.set(title=f"{name}: batch mean (± std over seeds)", xlabel="RL step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
