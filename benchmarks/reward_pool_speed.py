"""A CPU-bound reward (math-verify over 2,048 completions) inline vs on the process pool.

Inline is how TRL 1.16 calls reward functions (serially, in the trainer process); the pool splits
the batch over 2 worker processes. Target from the reward-components issue: >= 1.7x on 2 cores.

    .venv/bin/python benchmarks/reward_pool_speed.py   # writes results/reward_pool_speed.{json,png}
"""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path

from polyreward.rewards import RewardComponent, RewardSet, answer_reward

OUT = Path(__file__).parent / "results"
N, REPEATS = 2048, 3


def completions(seed: int = 0) -> tuple[list[str], list[str]]:
    """Math answers in varied but equivalent (or not) LaTeX forms, with their references."""
    rng = random.Random(seed)
    texts, refs = [], []
    for _ in range(N):
        a, b = rng.randint(1, 50), rng.randint(2, 60)
        form = rng.choice(
            [
                r"\frac{%d}{%d}" % (a, b),
                f"{a}/{b}",
                r"\dfrac{%d}{%d}" % (2 * a, 2 * b),
                f"{a / b:.6f}",
                r"\frac{%d}{%d} + 0" % (a, b),
                r"\sqrt{%d}" % (a * a),
            ]
        )
        texts.append(f"The result is \\boxed{{{form}}}.")
        refs.append(rng.choice([r"\frac{%d}{%d}" % (a, b), str(a)]))
    return texts, refs


def timed(reward_set: RewardSet) -> tuple[float, list[float]]:
    """Median seconds over fresh batches (math-verify caches parses, so a repeated batch is not CPU-bound)."""
    warm_texts, warm_refs = completions(seed=999)
    reward_set.score(["q"] * 64, warm_texts[:64], answer=warm_refs[:64])  # start the pool, import everything
    times, values = [], []
    for seed in range(REPEATS):
        texts, refs = completions(seed)
        start = time.perf_counter()
        values += reward_set.score(["q"] * N, texts, answer=refs).batch.rewards[:, 0].tolist()
        times.append(time.perf_counter() - start)
    return statistics.median(times), values


def main() -> None:
    reward = answer_reward("math", name="math")
    serial_s, serial_values = timed(RewardSet([reward]))
    with RewardSet([RewardComponent(reward, executor="process")], workers=2) as pooled:
        pool_s, pool_values = timed(pooled)
    report = {
        "n_completions": N,
        "workers": 2,
        "serial_s": serial_s,
        "pool_s": pool_s,
        "serial_per_s": N / serial_s,
        "pool_per_s": N / pool_s,
        "speedup": serial_s / pool_s,
        "same_rewards": serial_values == pool_values,
        "fraction_correct": sum(serial_values) / len(serial_values),
        "target_speedup": 1.7,
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "reward_pool_speed.json").write_text(json.dumps(report, indent=2))
    plot(report)
    print(json.dumps(report, indent=2))


def plot(report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(
        ["inline (TRL-style)", "process pool (2)"],
        [report["serial_per_s"], report["pool_per_s"]],
        color=["tab:gray", "tab:blue"],
    )
    ax.set_ylabel("completions scored per second")
    ax.set_title(f"math-verify on {N} completions: {report['speedup']:.2f}x")
    fig.tight_layout()
    fig.savefig(OUT / "reward_pool_speed.png", dpi=120)


if __name__ == "__main__":
    main()
