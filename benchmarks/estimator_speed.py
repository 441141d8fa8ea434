"""Speed of every registered estimator on N = 65,536 samples (groups of 16) x K = 8 rewards.

Target (issue "polyreward core"): each group estimator in <= 50 ms on 2 CPU threads. The batch
is built once (its dense group index is part of RewardBatch construction, timed separately).
Step estimators (gae, multi_critic) run on T = 256 steps x E = 256 environments x K = 8.
When verl is importable (``.venv-verl``, see benchmarks/README.md) its GRPO implementations run on
the same rewards in the same process, and the ratio verl / polyreward is recorded.

    .venv/bin/python benchmarks/estimator_speed.py        # writes results/estimator_speed.{json,png}
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import polyreward as pr
from polyreward.advantages import compute

N, K, G, TURNS = 65_536, 8, 16, 4
STEPS, ENVS = 256, 256
BUDGET_MS = 50.0
OUT = Path(__file__).parent / "results"


def timed(fn, repeats: int = 20) -> dict[str, float]:
    """Median and min wall time in ms over ``repeats`` calls after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times)}


def make_batches(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.randint(0, 2, (N, K), generator=gen).float()
    rewards[:, K // 2 :] = torch.rand(N, K - K // 2, generator=gen)  # half binary, half continuous
    rewards[torch.rand(N, K, generator=gen) < 0.02] = float("nan")  # 2% not applicable
    group_ids = torch.arange(N) // G
    turns = torch.rand(N, TURNS, generator=gen)
    turns[torch.rand(N, TURNS, generator=gen) < 0.25] = float("nan")
    turns[:, 0] = torch.rand(N, generator=gen)  # every sample has a first turn
    budgets = torch.tensor([512.0, 1024.0, 2048.0, 2560.0]).repeat_interleave(G // 4).repeat(N // G)
    step_rewards = torch.rand(STEPS, ENVS, K, generator=gen)
    terminated = torch.rand(STEPS, ENVS, generator=gen) < 0.01
    values = torch.rand(STEPS + 1, ENVS, K, generator=gen)
    return rewards, group_ids, turns, budgets, step_rewards, terminated, values


def main() -> None:
    torch.set_num_threads(2)
    rewards, group_ids, turns, budgets, step_rewards, terminated, values = make_batches()
    names = [f"r{k}" for k in range(K)]
    build = timed(lambda: pr.RewardBatch(rewards=rewards, names=names, group_ids=group_ids), repeats=10)
    batch = pr.RewardBatch(rewards=rewards, names=names, group_ids=group_ids, turn_rewards=turns, budgets=budgets)
    steps = pr.RewardBatch.from_steps(step_rewards, names, terminated, torch.zeros_like(terminated))
    cases = {
        "grpo": (batch, {}),
        "dr_grpo": (batch, {}),
        "rloo": (batch, {}),
        "reinforce_pp": (batch, {}),
        "gdpo": (batch, {}),
        "hdpo": (batch, {"gate": "r0"}),
        "hbpo": (batch, {}),
        "dual_level": (batch, {}),
        "directional": (batch, {"direction": [1.0] * K}),
        "gae": (steps, {"values": values}),
        "multi_critic": (steps, {"values": values}),
    }
    missing = set(pr.advantages.names()) - set(cases)
    if missing:
        sys.exit(f"no benchmark case for {sorted(missing)}")
    results = {name: timed(lambda n=name, b=b, p=p: compute(n, b, **p)) for name, (b, p) in cases.items()}
    peers = verl_peers(batch)
    report = {
        "setup": {
            "N": N,
            "K": K,
            "group_size": G,
            "turns": TURNS,
            "steps": [STEPS, ENVS],
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "budget_ms": BUDGET_MS,
        "batch_construction": build,
        "estimators": {n: {**r, "within_budget": r["median_ms"] <= BUDGET_MS} for n, r in results.items()},
        "peers": peers,
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "estimator_speed.json").write_text(json.dumps(report, indent=2))
    plot(report)
    for name, r in report["estimators"].items():
        print(f"{name:<14} {r['median_ms']:8.2f} ms  {'ok' if r['within_budget'] else 'OVER BUDGET'}")
    for name, r in peers.items():
        print(
            f"peer {name:<48} {r['median_ms']:9.2f} ms  vs polyreward {r['polyreward_ms']:.2f} ms: "
            f"{r['ratio']:.2f}x, max |diff| {r['max_abs_diff']:.1e}"
        )


def verl_peers(batch) -> dict[str, dict]:
    """verl 0.9.1's own GRPO and GDPO estimators on the same rewards, if verl is importable here.

    GRPO: verl takes the summed score per sample, so polyreward runs on the same ``[N, 1]`` scores.
    GDPO: both get the K = 8 matrix (NaN replaced by 0: verl has no "not applicable").
    """
    try:
        import numpy as np
        from verl.trainer.ppo import core_algos
    except ImportError:
        return {}
    index = np.array([str(g) for g in batch.group_ids.tolist()], dtype=object)
    mask = torch.ones(N, 1)
    summed = pr.RewardBatch(rewards=batch.weighted_sum()[:, None], names=["sum"], group_ids=batch.group_ids)
    ours_grpo = compute("grpo", summed, eps=1e-6)
    ours_grpo_ms = timed(lambda: compute("grpo", summed, eps=1e-6))["median_ms"]
    peers = {}
    for label, fn in [
        ("verl compute_grpo_outcome_advantage (loop)", core_algos.compute_grpo_outcome_advantage),
        ("verl compute_grpo_vectorized_outcome_advantage", core_algos.compute_grpo_vectorized_outcome_advantage),
    ]:
        adv, _ = fn(summed.rewards, mask, index)
        r = timed(lambda fn=fn: fn(summed.rewards, mask, index), repeats=3)
        peers[label] = {
            **r,
            "polyreward_ms": ours_grpo_ms,
            "ratio": r["median_ms"] / ours_grpo_ms,
            "max_abs_diff": float((adv[:, 0] - ours_grpo.advantages).abs().max()),
        }
    dense = pr.RewardBatch(rewards=torch.nan_to_num(batch.rewards), names=batch.names, group_ids=batch.group_ids)
    keys = list(dense.names)
    verl_inputs = dict(
        token_level_rewards=torch.zeros(N, 1),
        response_mask=mask,
        index=index,
        config={"gdpo_reward_keys": keys},
        non_tensor_batch={k: dense[k].numpy() for k in keys},
        batch={"prompts": torch.zeros(N, 1), "attention_mask": torch.ones(N, 2, dtype=torch.long)},
    )
    adv, _ = core_algos.compute_gdpo_outcome_advantage(**verl_inputs)
    r = timed(lambda: core_algos.compute_gdpo_outcome_advantage(**verl_inputs), repeats=1)
    ours_gdpo_ms = timed(lambda: compute("gdpo", dense, eps=1e-6))["median_ms"]
    peers["verl compute_gdpo_outcome_advantage (K=8)"] = {
        **r,
        "polyreward_ms": ours_gdpo_ms,
        "ratio": r["median_ms"] / ours_gdpo_ms,
        "max_abs_diff": float((adv[:, 0] - compute("gdpo", dense, eps=1e-6).advantages).abs().max()),
    }
    return peers


def plot(report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["estimators"])
    medians = [report["estimators"][n]["median_ms"] for n in names]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh(names, medians, color=["tab:blue" if m <= BUDGET_MS else "tab:red" for m in medians])
    ax.axvline(BUDGET_MS, color="k", linestyle="--", label=f"budget {BUDGET_MS:.0f} ms")
    ax.set_xlabel("median wall time per call (ms), 2 CPU threads")
    ax.set_title(f"polyreward estimators, N={N:,} x K={K} (groups of {G})")
    ax.invert_yaxis()
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "estimator_speed.png", dpi=120)


if __name__ == "__main__":
    main()
