"""Rewards on Ray actors vs the local process pool vs inline, in the same run.

Two workloads, each scored by the same RewardSet three ways: inline (serially in this process, as
TRL 1.16 calls rewards), ``executor="process"`` (2 forkserver workers) and ``executor="ray"``
(2 actors of a local Ray instance):

- ``math``: math-verify (``answer_reward("math")``) on fresh completions, as in reward_pool_speed.py;
- ``minilm``: sentence similarity with the all-MiniLM-L6-v2 model (``sentence_similarity_reward``),
  an expensive reward that loads a model once per process. ``first_s`` is the first batch (pool or
  actor start plus the model load in each worker); ``median_s`` the later batches.

    .venv/bin/python benchmarks/reward_ray_speed.py            # writes results/reward_ray_speed.{json,png}
    .venv/bin/python benchmarks/reward_ray_speed.py --n 128 --sim-n 64 --repeats 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from reward_pool_speed import N as POOL_N
from reward_pool_speed import completions as math_completions

from polyreward.rewards import RayRewardPool, RewardComponent, RewardSet, answer_reward, sentence_similarity_reward
from polyreward.rewards.ray_backend import init_ray

OUT = Path(__file__).parent / "results"
WORKERS = 2
WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "runs",
    "sleeps",
    "quickly",
    "slowly",
    "under",
    "over",
    "red",
    "blue",
    "house",
    "river",
    "tree",
    "sun",
    "moon",
]


def sentence_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Random short sentences and references (embeddings are not cached, but keep batches fresh anyway)."""
    rng = random.Random(seed)
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(6, 20))) for _ in range(n)]
    refs = [" ".join(rng.choices(WORDS, k=rng.randint(6, 20))) for _ in range(n)]
    return texts, refs


def timed(rs: RewardSet, batch: Callable[[int], tuple[list[str], dict]], repeats: int) -> dict:
    """Seconds of the first batch (cold) and median of ``repeats`` fresh batches after it."""
    texts, columns = batch(999)
    start = time.perf_counter()
    values = rs.score(["q"] * len(texts), texts, **columns).batch.rewards[:, 0].tolist()
    first = time.perf_counter() - start
    times = []
    for seed in range(repeats):
        texts, columns = batch(seed)
        start = time.perf_counter()
        values += rs.score(["q"] * len(texts), texts, **columns).batch.rewards[:, 0].tolist()
        times.append(time.perf_counter() - start)
    return {"first_s": first, "median_s": statistics.median(times), "values": values}


def run_workload(name: str, reward: Callable, batch: Callable[[int], tuple[list[str], dict]], n: int, repeats: int) -> dict:
    results = {}
    results["inline"] = timed(RewardSet([reward]), batch, repeats)
    with RewardSet([RewardComponent(reward, executor="process")], workers=WORKERS) as rs:
        results["process"] = timed(rs, batch, repeats)
    with RayRewardPool(WORKERS, num_cpus=WORKERS) as pool:
        # Ray starts once per job (or is a cluster); actors start in the first batch, like pool workers
        init_ray(WORKERS)
        results["ray"] = timed(RewardSet([RewardComponent(reward, executor="ray")], ray_actors=pool), batch, repeats)
    inline = results["inline"]["values"]
    diff = max(abs(a - b) for how in ("process", "ray") for a, b in zip(inline, results[how]["values"], strict=True))
    report = {"n_completions": n, "max_abs_diff_vs_inline": diff}
    for how, r in results.items():
        report[how] = {"first_s": r["first_s"], "median_s": r["median_s"], "per_s": n / r["median_s"]}
    for how in ("process", "ray"):
        report[f"{how}_speedup_vs_inline"] = results["inline"]["median_s"] / results[how]["median_s"]
    report["ray_vs_process"] = results["process"]["median_s"] / results["ray"]["median_s"]
    report["ray_vs_process_first_batch"] = results["process"]["first_s"] / results["ray"]["first_s"]
    print(name, json.dumps(report, indent=2), flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048, help="completions per math-verify batch")
    parser.add_argument("--sim-n", type=int, default=1024, help="completions per MiniLM batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed batches after the first")
    args = parser.parse_args()

    if not 0 < args.n <= POOL_N:
        parser.error(f"--n must be in 1..{POOL_N} (the batches of reward_pool_speed.py)")

    def math_batch(seed: int) -> tuple[list[str], dict]:
        texts, refs = math_completions(seed)
        return texts[: args.n], {"answer": refs[: args.n]}

    def sim_batch(seed: int) -> tuple[list[str], dict]:
        texts, refs = sentence_pairs(args.sim_n, seed)
        return texts, {"solution": refs}

    report = {
        "workers": WORKERS,
        "repeats": args.repeats,
        "math": run_workload("math", answer_reward("math", name="math"), math_batch, args.n, args.repeats),
        "minilm": run_workload("minilm", sentence_similarity_reward(), sim_batch, args.sim_n, args.repeats),
    }
    import ray

    ray.shutdown()
    OUT.mkdir(exist_ok=True)
    (OUT / "reward_ray_speed.json").write_text(json.dumps(report, indent=2))
    plot(report)


def plot(report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, (key, title) in zip(axes, [("math", "math-verify"), ("minilm", "MiniLM similarity")], strict=True):
        w = report[key]
        hows = ["inline", "process", "ray"]
        ax.bar(
            ["inline", f"process pool ({WORKERS})", f"Ray actors ({WORKERS})"],
            [w[h]["per_s"] for h in hows],
            color=["tab:gray", "tab:blue", "tab:orange"],
        )
        ax.set_ylabel("completions scored per second")
        ax.set_title(f"{title}, N={w['n_completions']}: ray/process {w['ray_vs_process']:.2f}x")
    fig.tight_layout()
    fig.savefig(OUT / "reward_ray_speed.png", dpi=120)


if __name__ == "__main__":
    main()
