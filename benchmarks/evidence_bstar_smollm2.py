"""Claim 9c: B-STaR on a language model: online rejection-sampling fine-tuning of SmolLM2-135M with
each iteration's (temperature, threshold) chosen by the balance score, vs fixed settings.

Task: the default job's arithmetic task, rewards ``correct`` (0/1), ``answer_format`` (0 / 0.5 / 1)
and ``brevity``; a sample's score is their sum (0..3, the value B-STaR's threshold applies to) and it
is correct when ``correct == 1``. One iteration of an arm:

1. ``bstar`` only: the library's ``bstar`` controller (``every = 1``) samples ``probe_prompts``
   random training prompts x ``probe_samples`` at each temperature of (0.4, 0.6, 0.8, 1.0), builds
   the balance table over thresholds (0, 1, 2, 2.5) with ``n* = 4`` and duplicates marked, and picks
   the best cell: the paper's search on "a small subset of training queries";
2. sample ``queries`` prompts (the same prompts for every arm of a seed) x ``samples`` completions at
   the arm's temperature;
3. keep the distinct completions of each prompt whose score is above the arm's threshold;
4. ``sft_steps`` optimizer steps of token NLL on the kept completions (``Trainer.supervised_step``,
   AdamW, continuing from the previous iteration).

Arms: ``bstar``; ``rft_T1.0`` (T = 1.0, threshold 2: keep the correct answers, the usual online
RFT); ``rft_T0.4`` (T = 0.4, threshold 2: the lowest temperature of the grid, where the base model
is most often right). The settings (grid, Q, S, n*, lr, SFT steps) were fixed on tuning seed 1000,
which is not among the compared seeds, by looking at the ``rft_T0.4`` arm only: with 8 iterations
it went from 0.344 to 1.000 greedy ``correct`` (0.875 after 6), so the compared runs stop at 6.

Measured after every iteration: greedy ``correct`` and joint success (every reward at its best) on
64 held-out prompts (``_evidence_lm.EVAL_SEED``); per iteration also the chosen temperature and
threshold, the kept count and the balance score of the data the arm trained on. Effects are paired
differences over seeds with 95 % t-intervals. Each finished run is cached under ``runs/``.

    .venv/bin/python benchmarks/evidence_bstar_smollm2.py --seeds 6   # results/evidence_bstar_smollm2.{json,png}
    .venv/bin/python benchmarks/evidence_bstar_smollm2.py --smoke --out /tmp/x
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch
from _evidence_lm import EVAL_SEED, evaluate_joint

from polyreward.lm.config import TrainConfig
from polyreward.lm.controllers import BStar, StepPlan
from polyreward.lm.model import load_policy
from polyreward.lm.tasks import build_task
from polyreward.lm.trainer import Trainer, seed_everything
from polyreward.rewards.selection import bstar_balance_table, repeated_samples
from polyreward.testbed import evidence as ev

NAME = "evidence_bstar_smollm2"
CLAIM = "Claim 9c (B-STaR on SmolLM2-135M): balance-score-chosen (temperature, threshold) vs fixed, online RFT"
TEMPERATURES = (0.4, 0.6, 0.8, 1.0)
THRESHOLDS = (0.0, 1.0, 2.0, 2.5)
ARMS: dict[str, tuple[float, float] | None] = {"bstar": None, "rft_T1.0": (1.0, 2.0), "rft_T0.4": (0.4, 2.0)}
BEST = {"correct": 1.0, "answer_format": 1.0, "brevity": 1.0}
TUNING_SEED = 1000
PLOTTED = ["correct", "joint", "temperature", "threshold", "balance"]  # the last three: index 0 = iteration 1


@dataclasses.dataclass(frozen=True)
class Settings:
    """Shared by every arm; fixed on the tuning seed before any compared run."""

    iterations: int = 6
    queries: int = 32  # training prompts per iteration (Q)
    samples: int = 4  # completions per prompt (S)
    n_star: int = 4  # B-STaR's n*
    probe_prompts: int = 8
    probe_samples: int = 4
    sft_steps: int = 2  # optimizer steps per iteration on the kept completions
    lr: float = 2e-5
    eval_prompts: int = 64
    model: str = TrainConfig().model


def score_of(trainer: Trainer, rows: list[dict], temperature: float, samples: int):
    """Sample ``samples`` completions of each row; ``(rollout, score[Q, S], correct[Q, S], dup[Q, S])``."""
    rollout = trainer.rollout([row[trainer.data.prompt_column] for row in rows], samples, temperature)
    batch, _ = trainer.score(rows, rollout)
    shape = (len(rows), samples)
    dup = repeated_samples(rollout.texts, samples)
    return rollout, batch.weighted_sum().view(shape), (batch["correct"] == 1).view(shape), dup


def run(arm: str, seed: int, cfg: Settings, threads: int) -> dict[str, list[float]]:
    """One self-improvement run from the base model; curves indexed by iteration (0 = the base)."""
    if threads:
        torch.set_num_threads(threads)  # two runs side by side on 2 cores need 1 thread each
    seed_everything(seed)
    config = TrainConfig(model=cfg.model, seed=seed, learning_rate=cfg.lr, micro_batch_size=8, threads=threads)
    model, tokenizer = load_policy(config.model, config.dtype, config.device)
    data, rewards = build_task(config)
    trainer = Trainer(model, tokenizer, rewards, data, config)
    fixed = ARMS[arm]
    chooser = None
    if fixed is None:
        chooser = BStar(
            correct="correct",
            temperatures=list(TEMPERATURES),
            thresholds=list(THRESHOLDS),
            every=1,
            probe_prompts=cfg.probe_prompts,
            probe_samples=cfg.probe_samples,
            n_star=cfg.n_star,
        )
        chooser.bind(rewards, data, seed)

    def probe(rows, samples, temperature):
        rollout = trainer.rollout([row[data.prompt_column] for row in rows], samples, temperature)
        return trainer.score(rows, rollout)[0], rollout.texts

    curves: dict[str, list[float]] = {k: [] for k in ("temperature", "threshold", "balance", "kept", "train_correct")}
    for key, value in evaluate_joint(model, tokenizer, config, cfg.eval_prompts, BEST).items():
        curves[key.removeprefix("eval/")] = [value]
    for iteration in range(cfg.iterations):
        if chooser is not None:
            chooser.plan(iteration, StepPlan(position=0, size=0), probe)
            temperature, threshold = chooser.chosen["temperature"], chooser.chosen["threshold"]
        else:
            temperature, threshold = fixed
        rows = data.batch(iteration * cfg.queries, cfg.queries)  # the same prompts for every arm of a seed
        rollout, score, correct, dup = score_of(trainer, rows, temperature, cfg.samples)
        kept = (score > threshold) & ~dup  # [Q, S]
        if kept.any():
            demos = dataclasses.replace(rollout.subset(kept.flatten().nonzero().squeeze(1)), group_size=1)
            for _ in range(cfg.sft_steps):
                trainer.supervised_step(demos)
        balance = bstar_balance_table(score[None].double(), correct[None], [threshold], cfg.n_star, dup[None])
        values = {
            "temperature": temperature,
            "threshold": threshold,
            "balance": float(balance[0, 0]),
            "kept": float(kept.sum()),
            "train_correct": float(correct.float().mean()),
        }
        evaluation = evaluate_joint(model, tokenizer, config, cfg.eval_prompts, BEST)
        values.update({k.removeprefix("eval/"): v for k, v in evaluation.items()})
        for key, value in values.items():
            curves[key].append(value)
        print(f"  {arm} seed {seed} iteration {iteration + 1}/{cfg.iterations}: T={temperature} tau={threshold} "
              f"kept {int(kept.sum())}, greedy correct {values['correct']:.3f}", flush=True)  # fmt: skip
    return curves


def cached_run(arm: str, seed: int, cfg: Settings, threads: int, root: Path) -> dict[str, list[float]]:
    """:func:`run`, reusing a stored result of the same arm, seed and settings."""
    path = root / f"{arm}-{seed}.json"
    settings = dataclasses.asdict(cfg)
    if path.exists() and json.loads(path.read_text())["settings"] == settings:
        return json.loads(path.read_text())["curves"]
    curves = run(arm, seed, cfg, threads)
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"settings": settings, "curves": curves}))
    return curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--model", default=None, help="model directory (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--runs", type=Path, default=None, help="cache of finished runs (default: runs/<name>)")
    parser.add_argument("--tune", action="store_true", help=f"run the rft_T0.4 arm on tuning seed {TUNING_SEED} only")
    parser.add_argument("--smoke", action="store_true", help="1 seed, 2 iterations, 4 prompts: checks the script runs")
    args = parser.parse_args()
    cfg = Settings() if args.model is None else Settings(model=args.model)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    if args.smoke:
        cfg = dataclasses.replace(cfg, iterations=2, queries=4, samples=2, probe_prompts=2, probe_samples=2, eval_prompts=4)
        seeds = [0]
    if args.tune:
        seeds, args.arms = [TUNING_SEED], ["rft_T0.4"]
    root = args.runs or Path(__file__).resolve().parents[1] / "runs" / (NAME + ("-smoke" if args.smoke else ""))
    start = time.perf_counter()
    curves: dict[str, dict[str, list[list[float]]]] = {arm: {} for arm in args.arms}
    final: dict[str, dict[str, list[float]]] = {arm: {} for arm in args.arms}
    for seed in seeds:
        for arm in args.arms:
            c = cached_run(arm, seed, cfg, args.threads, root)
            for key, values in c.items():
                curves[arm].setdefault(key, []).append(values)
            for key in ("correct", "joint"):
                final[arm].setdefault(f"final/{key}", []).append(c[key][-1])
                final[arm].setdefault(f"mean/{key}", []).append(statistics.fmean(c[key][1:]))
            for key in ("balance", "kept", "temperature", "threshold", "train_correct"):
                final[arm].setdefault(f"mean/{key}", []).append(statistics.fmean(c[key]))
            print(f"{arm:>9} seed {seed}: correct {c['correct'][0]:.3f} -> {c['correct'][-1]:.3f}, "
                  f"temperatures {c['temperature']}", flush=True)  # fmt: skip
    if args.tune:
        return
    comparisons = [
        ev.Comparison("bstar", base, metric)
        for base in args.arms
        if base != "bstar"
        for metric in ("final/correct", "mean/correct", "final/joint", "mean/balance")
    ]
    report = {
        "claim": CLAIM,
        "command": f"benchmarks/{NAME}.py --seeds {len(seeds)}" + (" --smoke" if args.smoke else ""),
        "notes": (
            f"Settings fixed on tuning seed {TUNING_SEED} (rft_T0.4 arm only) before any compared run. bstar "
            "spends probe_prompts x probe_samples x 4 temperatures extra samples per iteration on its search. "
            "Curves: index 0 of correct/joint is the base model; the others are per iteration."
        ),
        "settings": dataclasses.asdict(cfg),
        "grid": {"temperatures": TEMPERATURES, "thresholds": THRESHOLDS},
        "arms": {a: ({"temperature": p[0], "threshold": p[1]} if p else "bstar controller") for a, p in ARMS.items()},
        "eval_seed": EVAL_SEED,
        "seeds": seeds,
        **ev.outcome(final, comparisons, curves, time.perf_counter() - start),
    }
    summary = report["summary"]
    for arm in final:  # the end-of-run dots of the plot
        for key in ("correct", "joint"):
            summary[arm][key] = summary[arm][f"final/{key}"]
        summary[arm]["balance"] = ev.t_interval([v[-1] for v in curves[arm]["balance"]])
    ev.write(report, args.out, NAME, PLOTTED, smooth=1, xlabel="iteration")


if __name__ == "__main__":
    main()
