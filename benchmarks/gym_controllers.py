"""BARFI vs fixed reward weights on a corridor whose auxiliary reward is misaligned.

``Corridor``: positions 0..L-1, start at 1, actions left / right, at most 30 steps. The primary reward
pays 1 on reaching L-1 (the episode ends); the auxiliary ``coin`` pays 0.2 per step spent at position 0
(a designer's heuristic that, at weight 1, makes loitering worth more than the goal: 0.2 x 29 > 1).
Arms (same seeds, so same initial networks and resets): ``fixed`` (coin weight 1), ``barfi`` (coin
weight learned from 1, ``barfi_primary: reward``), ``primary_only`` (coin weight 0, a reference).
Final metric: mean primary return of the greedy policy over 16 episodes. Writes
``benchmarks/results/gym_controllers.{json,png}``.

    python benchmarks/gym_controllers.py                 # 3 seeds x 24k steps (about 1-2 minutes on 2 cores)
    python benchmarks/gym_controllers.py --seeds 5 --steps 50000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from polyreward.gym import PPO, GymConfig, evaluate

RESULTS = Path(__file__).parent / "results"


class Corridor(gym.Env):
    """See the module docstring. Observation: the one-hot position."""

    def __init__(self, length: int = 6, coin: float = 0.2):
        self.length, self.coin = length, coin
        self.observation_space = gym.spaces.Box(0.0, 1.0, (length,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.pos = 1

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.length, dtype=np.float32)
        obs[self.pos] = 1.0
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 1
        return self._obs(), {}

    def step(self, action):
        self.pos = min(max(self.pos + (1 if action == 1 else -1), 0), self.length - 1)
        goal = self.pos == self.length - 1
        coin = self.coin if self.pos == 0 else 0.0
        return self._obs(), float(goal), goal, False, {"coin": coin}


ENV_ID = "polyreward-bench/Corridor-v0"
if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=Corridor, max_episode_steps=30)

BASE = GymConfig(
    env_id=ENV_ID,
    info_rewards=["coin"],
    num_envs=4,
    num_steps=64,
    minibatches=4,
    epochs=4,
    lr=1e-3,
    anneal_lr=False,
    tensorboard=False,
    threads=1,
)
ARMS = {
    "fixed": dataclasses.replace(BASE, weights={"coin": 1.0}),
    "barfi": dataclasses.replace(BASE, weights={"coin": 1.0}, barfi_primary="reward", barfi_lr=0.2),
    "primary_only": dataclasses.replace(BASE, weights={"coin": 0.0}),
}


def run(arm: str, seed: int, steps: int) -> dict:
    curve, weights = [], []

    def record(ppo: PPO, metrics: dict[str, float]) -> None:
        curve.append(metrics.get("reward/reward/episodic_return", math.nan))
        weights.append(float(ppo.weights[1]))

    with tempfile.TemporaryDirectory() as out:
        config = dataclasses.replace(ARMS[arm], seed=seed, output_dir=out)
        start = time.perf_counter()
        ppo = PPO(ENV_ID, config).learn(steps, callback=record, progress=False)
        seconds = time.perf_counter() - start
        result = evaluate(ppo, episodes=16)
        ppo.env.close()
    return {
        "final_primary_return": result.mean["reward"],
        "final_coin_return": result.mean["coin"],
        "final_coin_weight": weights[-1],
        "curve_primary_return": [None if math.isnan(v) else round(v, 4) for v in curve],
        "curve_coin_weight": [round(w, 4) for w in weights],
        "seconds": round(seconds, 2),
    }


def _interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of a 95% t-interval (n >= 2)."""
    from scipy import stats

    a = np.asarray(values, dtype=np.float64)
    if len(a) < 2:
        return float(a.mean()), math.nan
    return float(a.mean()), float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for arm, runs in results["runs"].items():
        curves = np.array([[np.nan if v is None else v for v in r["curve_primary_return"]] for r in runs])
        x = np.arange(curves.shape[1]) * BASE.batch_size
        left.plot(x, np.nanmean(curves, 0), label=arm)
        if arm == "barfi":
            for r in runs:
                right.plot(x, r["curve_coin_weight"], color="C1", alpha=0.7)
    left.set(xlabel="env steps", ylabel="primary episodic return (training)", title="Corridor, misaligned coin")
    left.legend()
    right.set(xlabel="env steps", ylabel="coin weight phi", title="BARFI's learned weight (one line per seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=24_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "gym_controllers")
    args = parser.parse_args()
    runs = {arm: [run(arm, seed, args.steps) for seed in range(args.seeds)] for arm in ARMS}
    summary = {arm: _interval([r["final_primary_return"] for r in rs]) for arm, rs in runs.items()}
    paired = [
        b["final_primary_return"] - f["final_primary_return"] for b, f in zip(runs["barfi"], runs["fixed"], strict=True)
    ]
    results = {
        "claim": "BARFI lowers a misaligned auxiliary weight and recovers the primary return fixed weights lose",
        "command": f"python benchmarks/gym_controllers.py --seeds {args.seeds} --steps {args.steps}",
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "threads": 1},
        "steps": args.steps,
        "seeds": args.seeds,
        "final_primary_return_mean_ci95": {arm: {"mean": m, "ci95": h} for arm, (m, h) in summary.items()},
        "barfi_minus_fixed": {"per_seed": paired, "mean_ci95": _interval(paired)},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    plot(results, args.out.with_suffix(".png"))
    for arm, (m, h) in summary.items():
        print(f"{arm:>13}: final primary return {m:.3f} ± {h:.3f}")
    print("barfi - fixed per seed:", [round(p, 3) for p in paired])


if __name__ == "__main__":
    main()
