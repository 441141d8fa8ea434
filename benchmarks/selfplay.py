"""Short runs of the two self-play trainers on SmolLM2-135M with the built-in arithmetic knowledge base.

``python benchmarks/selfplay.py [--rounds 8] [--seeds 1]`` runs, per seed, three arms through the
public builders (``build_dual_play`` / ``build_complementary``) and their ``train`` loop:

- ``dual_play_signal``: PasoDoble, ``mode: joint``, with the documented settings that give a 135M
  model a signal (``validity_weight: 0.5``, ``skip_uninformative: false``);
- ``dual_play_paper``: the same with the paper's defaults (``validity_weight: 0``, skip on), which
  shows how many rounds are skipped;
- ``complementary``: Complementary RL (actor + lesson extractor).

Per round it records, for dual play: the fraction of valid proposals, the Solver's pass rate on the
proposed (valid) questions, the means of the Proposer's reward components, the skipped flag and the
seconds; for Complementary RL: the actor's success on its batch (which carries the retrieved bank
lessons), the success of the probe rollouts with each parsed new lesson and the paired success
without it, the lesson gain, the parse rate, the bank size and the seconds. It writes
``benchmarks/results/selfplay.{json,png}``. A few rounds of a 135M model on a shared CPU: the numbers
show that the loops run and what a round costs, not that either method improves the model.

``--smoke`` runs 2 rounds of each arm on a tiny random Llama with a byte-level tokenizer
(``tests/e2e/tiny_lm.make_chatml_model``, built offline in seconds) and writes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from polyreward.lm.experience import ComplementaryConfig, build_complementary  # noqa: E402
from polyreward.lm.selfplay import DualPlayConfig, build_dual_play  # noqa: E402

# Role sizes: a round of SmolLM2-135M on 2 shared CPU cores stays well under a minute.
PROPOSER = {"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 32, "learning_rate": 1e-5}
SOLVER = {"group_size": 4, "max_new_tokens": 16, "learning_rate": 1e-5}
ACTOR = {"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 16, "learning_rate": 1e-5}
EXTRACTOR = {"group_size": 2, "max_new_tokens": 32, "learning_rate": 1e-5}
SMOKE = {
    "proposer": {"prompts_per_step": 1, "group_size": 2, "max_new_tokens": 8, "learning_rate": 1e-2},
    "solver": {"group_size": 2, "max_new_tokens": 4, "learning_rate": 1e-2},
    "actor": {"prompts_per_step": 1, "group_size": 2, "max_new_tokens": 4, "learning_rate": 1e-2},
    "extractor": {"group_size": 2, "max_new_tokens": 8, "learning_rate": 1e-2},
}

ARMS = {
    "dual_play_signal": {"trainer": "dual_play", "validity_weight": 0.5, "skip_uninformative": False},
    "dual_play_paper": {"trainer": "dual_play"},
    "complementary": {"trainer": "complementary"},
}

DUAL_KEYS = {
    "valid_fraction": "selfplay/valid_fraction",
    "questions": "selfplay/questions",
    "solver_pass_rate": "selfplay/solver_pass_rate",
    "proposer_validity": "proposer/reward/validity/mean",
    "proposer_difficulty": "proposer/reward/difficulty/mean",
    "proposer_diversity": "proposer/reward/diversity/mean",
    "proposer_reward": "selfplay/proposer_reward",
    "skipped": "selfplay/skipped",
    "proposer_learned": "selfplay/proposer_learned",
    "solver_learned": "selfplay/solver_learned",
    "seconds": "time/round_s",
}
COMPLEMENTARY_KEYS = {
    "actor_success": "experience/success_without",
    "lesson_parsed_fraction": "experience/parsed_fraction",
    "lesson_gain": "experience/gain",
    "bank_size": "experience/bank_size",
    "retrieved_per_prompt": "experience/retrieved",
    "extractor_lesson_format": "extractor/reward/lesson_format/mean",
    "seconds": "time/round_s",
}


def clean(value):
    """NaN (e.g. no valid question in a round) as JSON null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def run_arm(arm: str, seed: int, rounds: int, model: str, threads: int, work: Path, smoke: bool) -> dict:
    spec = dict(ARMS[arm])
    kind = spec.pop("trainer")
    output_dir = str(work / f"{arm}-{seed}")
    common = dict(model=model, steps=rounds, seed=seed, threads=threads, save_every=0, output_dir=output_dir)
    start = time.perf_counter()
    if kind == "dual_play":
        roles = {"proposer": SMOKE["proposer"] if smoke else PROPOSER, "solver": SMOKE["solver"] if smoke else SOLVER}
        loop = build_dual_play(DualPlayConfig(mode="joint", **spec, **common, **roles))
    else:
        roles = {"actor": SMOKE["actor"] if smoke else ACTOR, "extractor": SMOKE["extractor"] if smoke else EXTRACTOR}
        loop = build_complementary(ComplementaryConfig(**spec, **common, **roles))
        probes = watch_lesson_probes(loop)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    run_dir = loop.train(progress=False)  # the final round also saves both roles' checkpoints
    total_s = time.perf_counter() - start
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    keys = DUAL_KEYS if kind == "dual_play" else COMPLEMENTARY_KEYS
    per_round = {name: [clean(r.get(key, float("nan"))) for r in records] for name, key in keys.items()}
    if kind == "complementary":
        for name in ("success_with_lesson", "success_without_paired", "lessons_probed"):
            per_round[name] = [clean(p[name]) for p in probes]
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()][:4]
    return {
        "trainer": kind,
        "settings": {**spec, **roles},
        "per_round": per_round,
        "load_s": load_s,
        "train_s_incl_final_checkpoint": total_s,
        "first_samples": samples,
    }


def watch_lesson_probes(loop) -> list[dict]:
    """Record, per round, the probe success rates with each parsed new lesson and the paired rates without it.

    Wraps the loop's own ``_extract`` (which returns them) without changing what it does."""
    probes: list[dict] = []
    extract = loop._extract

    def recorded(rows, rollout, without, contexts):
        prompts, lessons, lesson_rollout, with_rates = extract(rows, rollout, without, contexts)
        g_e = lesson_rollout.group_size
        parsed = [i for i, x in enumerate(lessons) if x is not None]
        probes.append(
            {
                "lessons_probed": len(parsed),
                "success_with_lesson": statistics.mean(with_rates[i] for i in parsed) if parsed else float("nan"),
                "success_without_paired": statistics.mean(without[i // g_e] for i in parsed) if parsed else float("nan"),
            }
        )
        return prompts, lessons, lesson_rollout, with_rates

    loop._extract = recorded
    return probes


def summarize(runs: list[dict]) -> dict:
    """Per metric: the mean over all rounds of all seeds (nulls skipped) and its count."""
    out = {}
    for name in runs[0]["per_round"]:
        values = [v for run in runs for v in run["per_round"][name] if v is not None]
        out[name] = {"mean": statistics.mean(values) if values else None, "n": len(values)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--arms", nargs="*", default=list(ARMS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--smoke", action="store_true", help="2 rounds of each arm on a tiny offline model")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model
        rounds = args.rounds
        if args.smoke:
            from tests.e2e.tiny_lm import make_chatml_model

            model, rounds = str(make_chatml_model(work / "model")), min(args.rounds, 2)
        for arm in args.arms:
            runs = []
            for seed in range(args.seeds):
                runs.append(run_arm(arm, seed, rounds, model, args.threads, work, args.smoke))
                seconds = runs[-1]["per_round"]["seconds"]
                print(arm, seed, f"{statistics.mean(seconds):.1f} s/round", json.dumps(runs[-1]["per_round"]), flush=True)
            results[arm] = {"runs": runs, "summary": summarize(runs)}
    meta = {
        "model": "tiny ChatML Llama (smoke)" if args.smoke else args.model,
        "rounds": rounds,
        "seeds": args.seeds,
        "threads": args.threads,
        "device": "cpu",
        "task": "arithmetic",
        "mode": "joint",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "selfplay.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    plot(results, args.out / "selfplay.png", meta)


def plot(results: dict, path: Path, meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("dual play: valid proposals", "valid_fraction", ("dual_play_signal", "dual_play_paper")),
        ("dual play: Solver pass rate", "solver_pass_rate", ("dual_play_signal", "dual_play_paper")),
        ("dual play: Proposer reward (scalar)", "proposer_reward", ("dual_play_signal", "dual_play_paper")),
        ("dual play: skipped", "skipped", ("dual_play_signal", "dual_play_paper")),
        ("complementary: success", ("actor_success", "success_with_lesson", "success_without_paired"), ("complementary",)),
        ("complementary: lesson gain / bank", ("lesson_gain", "lesson_parsed_fraction"), ("complementary",)),
        ("complementary: bank size", "bank_size", ("complementary",)),
        ("seconds per round", "seconds", tuple(results)),
    ]
    fig, axes = plt.subplots(2, 4, figsize=(16, 6.5))
    for ax, (title, metrics, arms) in zip(axes.flat, panels, strict=True):
        metrics = (metrics,) if isinstance(metrics, str) else metrics
        for arm in arms:
            if arm not in results:
                continue
            for metric in metrics:
                for s, run in enumerate(results[arm]["runs"]):
                    values = [float("nan") if v is None else v for v in run["per_round"][metric]]
                    label = f"{arm}:{metric}" if len(metrics) > 1 or len(arms) > 1 else metric
                    ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, label=label if s == 0 else None)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("round", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    title = f"self-play, {meta['model']}, {meta['seeds']} seed(s) x {meta['rounds']} rounds, {meta['threads']} CPU threads"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
