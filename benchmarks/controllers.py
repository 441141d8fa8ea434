"""Tiny-model comparison of each training-dynamics controller against the plain GRPO trainer.

``python benchmarks/controllers.py [--seeds 3] [--steps 8]`` trains the tiny random Llama of the
e2e tests on the "say yes" toy task (rewards ``says_yes`` in [0, 1] and ``is_short`` in {0, 1})
with and without each controller, for several seeds, and writes
``benchmarks/results/controllers.{json,png}``: per variant the mean ``says_yes`` over the last
three steps (mean and standard deviation over seeds) and the seconds per step. The DPA run also
gets a directional sweep (mean rewards of prompts conditioned on angles 0..90 degrees) with its
Pareto front; the AMFT run records its μ trajectory and the ExIt run its buffer statistics
(``extras_per_seed``). A few steps of a 30k-parameter model: numbers show the machinery runs and what it
costs, not which method wins at scale.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from polyreward.lm.dpa import condition_prompt, directional_sweep  # noqa: E402
from polyreward.lm.model import load_policy  # noqa: E402
from polyreward.lm.rollout import encode_prompts, sample_group  # noqa: E402
from polyreward.lm.trainer import Trainer  # noqa: E402
from polyreward.rewards import RewardComponent, RewardSet  # noqa: E402
from tests.e2e.tiny_lm import WORDS, is_short, make_tiny_model, says_yes, tiny_config  # noqa: E402

ROWS = [{"prompt": f"say {w} please", "task": "even" if i % 2 == 0 else "odd"} for i, w in enumerate(WORDS)]


def word_count(prompts, completions, **kwargs):
    return [float(len(c.split())) for c in completions]


VARIANTS = {
    "baseline": [],
    "bstar": [
        {
            "kind": "bstar",
            "params": {
                "correct": "is_short",
                "temperatures": [0.6, 1.0, 1.4],
                "every": 4,
                "probe_prompts": 2,
                "probe_samples": 4,
                "n_star": 2,
            },
        }
    ],
    "learning_progress": [{"kind": "learning_progress", "params": {"reward": "says_yes"}}],
    "value_resample": [{"kind": "value_resample", "params": {"reward": "says_yes"}}],
    "variance_filter": [{"kind": "variance_filter", "params": {"reward": "says_yes", "runs": 4}}],
    "staged_tasks": [
        {
            "kind": "staged_tasks",
            "params": {"stages": [{"until": 4, "weights": {"even": 1}}, {"weights": {"even": 1, "odd": 1}}]},
        }
    ],
    "alternating_rewards": [
        {
            "kind": "alternating_rewards",
            "params": {
                "window": 4,
                "first": 3,
                "a": {"says_yes": 1.0, "is_short": 0.0},
                "b": {"says_yes": 0.0, "is_short": 1.0},
            },
        }
    ],
    "duration_weighting": [{"kind": "duration_weighting", "params": {"duration": "word_count"}}],
    "dpa": [{"kind": "dpa", "params": {"objectives": ["says_yes", "is_short"], "angles": [0, 90]}}],
    # AMFT with the released constants would sit in its 50-step pure-SFT warm-up for this whole run; here one
    # warm-up step, a meta step every step and meta_lr 0.1 / entropy_lr 0.05 (released: 1e-4 / 5e-4) so that
    # mu moves within 6 steps without reaching its 0.95 cap. The demonstration of every prompt is the ideal answer.
    "amft": [
        {
            "kind": "amft",
            "params": {
                "demonstration": "yes yes yes yes",
                "warmup_steps": 1,
                "meta_every": 1,
                "meta_lr": 0.1,
                "entropy_lr": 0.05,
                "validation_rows": 4,
            },
        }
    ],
    # ExIt: half the prompt slots replay a buffered self-iteration instance; the instruction uses words of the
    # tiny word-level vocabulary (the default instruction would be unknown tokens).
    "exit": [{"kind": "exit", "params": {"reward": "says_yes", "mix": 0.5, "max_depth": 2, "instruction": "please say"}}],
}

# per-variant metrics recorded besides says_yes: (metrics.jsonl key, how to summarize a run)
EXTRAS = {
    "amft": {"amft/mu": "trajectory"},
    "exit": {"exit/from_buffer_frac": "mean", "exit/buffer_size": "last", "exit/mean_depth": "mean"},
}


def run_variant(name, controllers, seed, steps, model_dir, work):
    config = tiny_config(
        work / f"{name}-{seed}",
        model_dir,
        steps=steps,
        save_every=0,
        seed=seed,
        controllers=controllers,
        prompts_per_step=2,
        group_size=4,
    )
    model, tokenizer = load_policy(config.model)
    rewards = [says_yes, is_short] + ([RewardComponent(word_count, weight=0.0)] if name == "duration_weighting" else [])
    start = time.perf_counter()
    run = Trainer(model, tokenizer, rewards, ROWS, config).train(progress=False)
    seconds = (time.perf_counter() - start) / steps
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    final = statistics.mean(r["reward/says_yes/mean"] for r in records[-3:])
    sweep = dpa_sweep(model, tokenizer, seed) if name == "dpa" else None
    extras = {}
    for key, how in EXTRAS.get(name, {}).items():
        values = [r[key] for r in records]
        extras[key] = {"trajectory": values, "mean": statistics.mean(values), "last": values[-1]}[how]
    return final, seconds, sweep, extras


def dpa_sweep(model, tokenizer, seed, angles=(0, 30, 60, 90), samples=8):
    reward_set = RewardSet([says_yes, is_short])
    model.eval()

    def score_at(v):
        prompts = [condition_prompt(row["prompt"], v.tolist(), ["says_yes", "is_short"]) for row in ROWS]
        rollout = sample_group(
            model, tokenizer, encode_prompts(tokenizer, prompts), samples, 6, 1.0, 1.0, torch.Generator().manual_seed(seed)
        )
        batch = reward_set.score([p for p in prompts for _ in range(samples)], rollout.texts, group_size=samples).batch
        return batch.rewards

    return directional_sweep(score_at, angles)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = make_tiny_model(work / "model")
        for name in args.variants:
            runs = [run_variant(name, VARIANTS[name], seed, args.steps, model_dir, work) for seed in range(args.seeds)]
            finals = [f for f, _, _, _ in runs]
            results[name] = {
                "says_yes_last3_mean": statistics.mean(finals),
                "says_yes_last3_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
                "per_seed": finals,
                "seconds_per_step": statistics.mean(s for _, s, _, _ in runs),
                **({"dpa_sweep_seed0": runs[0][2]} if runs[0][2] else {}),
                **({"extras_per_seed": [r[3] for r in runs]} if runs[0][3] else {}),
            }
            print(name, {k: v for k, v in results[name].items() if k != "dpa_sweep_seed0"}, flush=True)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"seeds": args.seeds, "steps": args.steps, "threads": 1, "model": "tiny random Llama (tests/e2e/tiny_lm.py)"}
    (out / "controllers.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    plot(results, out / "controllers.png", meta)


def plot(results, path, meta) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar(
        names,
        [results[n]["says_yes_last3_mean"] for n in names],
        yerr=[results[n]["says_yes_last3_std"] for n in names],
        capsize=3,
    )
    ax.set_ylabel("says_yes, mean of last 3 steps")
    ax.set_title(f"tiny-model controllers, {meta['seeds']} seeds x {meta['steps']} steps (mean ± std)")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
