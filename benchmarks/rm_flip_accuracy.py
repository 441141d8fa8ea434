"""Held-out pair accuracy of plain Bradley-Terry vs the preference-strength variant under label noise.

Target (issue "Reward models"): with 20% and 40% of the training labels flipped, the preference-strength
variant (Secrets of RLHF II, arXiv 2401.06080: an ensemble of M reward models measures each pair's
strength; pairs whose ensemble mean contradicts the label are flipped, every pair gets the adaptive margin)
keeps more held-out accuracy than plain BT. Data: the built-in checkable sentiment pairs
(:func:`polyreward.rm.sentiment_pairs`), flipped in an exact fraction; the held-out pairs are clean.

Backbone: a tiny random-init Llama over the task's words by default (seconds per run on CPU), or any local
causal LM with ``--model`` (e.g. ``smollm2-135m``: much slower on CPU). Writes
``results/rm_flip_accuracy.{json,png}`` (``--tag`` adds a suffix, e.g. for smoke runs).

    .venv/bin/python benchmarks/rm_flip_accuracy.py                         # 6 seeds x 0/20/40% flips
    .venv/bin/python benchmarks/rm_flip_accuracy.py --seeds 1 --size 256 --tag smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from polyreward.rm.config import RMConfig
from polyreward.rm.data import SENTIMENT_WORDS, sentiment_pairs
from polyreward.rm.train import ensemble_strength, evaluate_pairs, fit, new_model, strength_targets
from polyreward.testbed import evidence as ev

OUT = Path(__file__).parent / "results"
VARIANTS = {
    "plain_bt": {},
    "strength_flip_margin": {"denoise": "flip", "margin": "strength"},
}


def tiny_backbone(directory: Path) -> str:
    """A 2-layer, 32-wide random Llama with a word tokenizer over the task's vocabulary (seeded)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "<s>", "</s>", *dict.fromkeys(SENTIMENT_WORDS)]
    backend = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(words),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    tok.save_pretrained(directory)
    return str(directory)


def run_one(config: RMConfig, flip: float, seed: int, variant: str, held_out) -> dict:
    config = dataclasses.replace(config, seed=seed)  # data, ensemble members and heads all follow the seed
    generated = sentiment_pairs(config.synthetic_size, flip_fraction=flip, seed=seed)
    train = generated.pairs
    start = time.perf_counter()
    targets = margins = None
    extra: dict = {}
    if VARIANTS[variant]:
        _, mu, sigma = ensemble_strength(config, train)
        targets, margins, extra = strength_targets(config, train, mu)
        suspect = (mu[:, 0] < 0).tolist()
        hits = sum(s and f for s, f in zip(suspect, generated.flipped, strict=True))
        extra["flip_recall"] = hits / max(sum(generated.flipped), 1)
        extra["flip_precision"] = hits / max(sum(suspect), 1)
        extra["strength/sigma_mean"] = float(sigma.mean())
    model = new_model(config, train.objectives, seed)
    fit(model, config, train, epochs=config.epochs, seed=seed, targets=targets, margins=margins)
    accuracy = evaluate_pairs(model, held_out, config.max_length)["eval/accuracy/sentiment"]
    return {
        "flip": flip,
        "seed": seed,
        "variant": variant,
        "accuracy": accuracy,
        "seconds": time.perf_counter() - start,
        **extra,
    }


def summarize(runs: list[dict]) -> list[dict]:
    rows = []
    for flip in sorted({r["flip"] for r in runs}):
        for variant in VARIANTS:
            acc = [r["accuracy"] for r in runs if r["flip"] == flip and r["variant"] == variant]
            interval = ev.t_interval(acc)
            rows.append(
                {
                    "flip": flip,
                    "variant": variant,
                    "mean": statistics.mean(acc),
                    "std": statistics.pstdev(acc),
                    "ci95": [interval["low"], interval["high"]],
                    "n": len(acc),
                }
            )
    return rows


def effects(runs: list[dict]) -> list[dict]:
    """Per flip rate: preference strength minus plain BT held-out accuracy, paired by seed, 95 % t-interval."""
    out = []
    for flip in sorted({r["flip"] for r in runs}):
        by_variant = {
            v: [r["accuracy"] for r in sorted(runs, key=lambda r: r["seed"]) if r["flip"] == flip and r["variant"] == v]
            for v in VARIANTS
        }
        plain, strength = VARIANTS  # the names, in order
        comparison = ev.Comparison(strength, plain, f"accuracy at {flip:.0%} flipped")
        effect = ev.paired_effect(by_variant[strength], by_variant[plain])
        out.append({"flip": flip, "effect": effect, "verdict": ev.verdict(comparison, effect)})
    return out


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for variant in VARIANTS:
        part = [r for r in rows if r["variant"] == variant]
        ax.errorbar(
            [100 * r["flip"] for r in part],
            [r["mean"] for r in part],
            yerr=[[r["mean"] - r["ci95"][0] for r in part], [r["ci95"][1] - r["mean"] for r in part]],
            marker="o",
            capsize=4,
            label=variant,
        )
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="flipped training labels (%)", ylabel="held-out pair accuracy", title=title, ylim=(0.4, 1.0))
    ax.text(0.02, 0.02, "mean, 95 % t-interval over seeds", transform=ax.transAxes, fontsize=8, color="grey")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="'tiny' (default) or a local causal-LM dir / smollm2-135m")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--flips", type=float, nargs="+", default=[0.0, 0.2, 0.4])
    parser.add_argument("--size", type=int, default=1024, help="training pairs per run")
    parser.add_argument("--held-out", type=int, default=1024, help="clean held-out pairs")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--ensemble", type=int, default=3, help="M ensemble members of the strength variant")
    parser.add_argument("--ensemble-epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3, help="learning rate (use ~1e-5 for SmolLM2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default="", help="suffix of the result files, e.g. 'smoke'")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_backbone(Path(tmp)) if args.model == "tiny" else args.model
        config = RMConfig(
            model=model,
            synthetic_size=args.size,
            epochs=args.epochs,
            batch_size=16,
            learning_rate=args.lr,
            freeze_embeddings=args.model != "tiny",
            max_length=128,
            ensemble_size=args.ensemble,
            ensemble_epochs=args.ensemble_epochs,
            denoise="flip",
            margin="strength",
        )
        held_out = sentiment_pairs(args.held_out, seed=10_000).pairs
        runs = []
        for flip in args.flips:
            for seed in range(args.seeds):
                for variant in VARIANTS:
                    runs.append(run_one(config, flip, seed, variant, held_out))
                    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in runs[-1].items()}))
    rows, paired = summarize(runs), effects(runs)
    name = "rm_flip_accuracy" + (f"_{args.tag}" if args.tag else "")
    OUT.mkdir(exist_ok=True)
    result = {
        "benchmark": "rm_flip_accuracy",
        "machine": {"platform": platform.platform(), "threads": args.threads, "torch": torch.__version__},
        "args": vars(args),
        "summary": rows,
        "effects": paired,
        "verdicts": [e["verdict"] for e in paired],
        "runs": runs,
    }
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2))
    plot(rows, OUT / f"{name}.png", f"RM accuracy under label noise ({args.model}, {args.seeds} seeds)")
    for r in rows:
        print(f"flip {r['flip']:.0%}  {r['variant']:<22} {r['mean']:.3f} ± {r['std']:.3f}  (n={r['n']})")
    print("\n".join(result["verdicts"]))


if __name__ == "__main__":
    main()
