"""BARFI vs fixed reward weights on corridors whose auxiliary reward is misaligned (everywhere, or in some states).

``coin`` (``Corridor``): positions 0..L-1, start at 1, actions left / right, at most 30 steps. The
primary reward pays 1 on reaching L-1 (the episode ends); the auxiliary ``coin`` pays 0.2 per step spent
at position 0 (a designer's heuristic that, at weight 1, makes loitering worth more than the goal:
0.2 x 29 > 1). Arms (same seeds, so same initial networks and resets): ``fixed`` (coin weight 1),
``barfi`` (coin weight learned from 1, ``barfi_primary: reward``), ``primary_only`` (coin weight 0, a
reference). Writes ``benchmarks/results/gym_controllers.{json,png}``.

``per_state`` (``MixedCorridor``): positions 0..9, start at 3, goal at 9. One auxiliary component
``hint`` mixes an aligned heuristic (0.2 per position right of the start reached for the first time in
the episode, a progress signal) with a misaligned one (0.2 per step spent at position 0, the coin). At
weight 1 loitering (0.2 x 27) beats the goal (1 + 6 x 0.2). Arms: ``fixed`` (hint weight 1),
``barfi_global`` (one learned weight), ``barfi_state`` (``barfi_weights: state``, phi(s) linear in the
one-hot position), ``primary_only``.
Writes ``benchmarks/results/gym_controllers_per_state.{json,png}``.

Final metric: mean primary return of the greedy policy over 16 episodes.

    python benchmarks/gym_controllers.py                          # both, 3 seeds x 24k steps (a few minutes on 2 cores)
    python benchmarks/gym_controllers.py --experiment per_state --seeds 3 --steps 12000
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
import torch

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


class MixedCorridor(Corridor):
    """See the module docstring: ``hint`` = coin at position 0 + progress to the right of the start."""

    def __init__(self, length: int = 10, start: int = 3, coin: float = 0.2, progress: float = 0.2):
        super().__init__(length, coin)
        self.start, self.progress = start, progress

    def reset(self, *, seed=None, options=None):
        _, info = super().reset(seed=seed)
        self.pos = self.furthest = self.start
        return self._obs(), info

    def step(self, action):
        obs, goal, terminated, truncated, info = super().step(action)
        progress = self.progress if self.pos > self.furthest else 0.0  # new ground only: oscillating earns nothing
        self.furthest = max(self.furthest, self.pos)
        return obs, goal, terminated, truncated, {"hint": info.pop("coin") + progress}


ENV_ID = "polyreward-bench/Corridor-v0"
MIXED_ID = "polyreward-bench/MixedCorridor-v0"
for _id, _entry in ((ENV_ID, Corridor), (MIXED_ID, MixedCorridor)):
    if _id not in gym.registry:
        gym.register(_id, entry_point=_entry, max_episode_steps=30)

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
MIXED = dataclasses.replace(BASE, env_id=MIXED_ID, info_rewards=["hint"], weights={"hint": 1.0})
MIXED_ARMS = {
    "fixed": MIXED,
    "barfi_global": dataclasses.replace(MIXED, barfi_primary="reward", barfi_lr=0.2),
    "barfi_state": dataclasses.replace(
        MIXED, barfi_primary="reward", barfi_lr=0.2, barfi_weights="state", barfi_hidden_sizes=[]
    ),
    "primary_only": dataclasses.replace(MIXED, weights={"hint": 0.0}),
}
EXPERIMENTS = {  # name: (arms, auxiliary component, output stem, claim)
    "coin": (ARMS, "coin", "gym_controllers", "BARFI lowers a misaligned auxiliary weight and recovers the primary return"),
    "per_state": (
        MIXED_ARMS,
        "hint",
        "gym_controllers_per_state",
        "per-state BARFI weights keep an auxiliary reward where it helps and drop it where it misleads",
    ),
}


def run(config: GymConfig, aux: str, seed: int, steps: int) -> dict:
    """One training run and its greedy evaluation; per-state weights also report ``phi`` at each position."""
    curve, weights = [], []

    def record(ppo: PPO, metrics: dict[str, float]) -> None:
        curve.append(metrics.get("reward/reward/episodic_return", math.nan))
        weights.append(float(ppo.weights[1]))  # per state: the mean over the rollout's states

    with tempfile.TemporaryDirectory() as out:
        config = dataclasses.replace(config, seed=seed, output_dir=out)
        start = time.perf_counter()
        ppo = PPO(config.env_id, config).learn(steps, callback=record, progress=False)
        seconds = time.perf_counter() - start
        result = evaluate(ppo, episodes=16)
        ppo.env.close()
    out = {
        "final_primary_return": result.mean["reward"],
        f"final_{aux}_return": result.mean[aux],
        f"final_{aux}_weight": weights[-1],
        "curve_primary_return": [None if math.isnan(v) else round(v, 4) for v in curve],
        f"curve_{aux}_weight": [round(w, 4) for w in weights],
        "seconds": round(seconds, 2),
    }
    if ppo.barfi is not None and ppo.barfi.per_state:
        positions = torch.eye(ppo.env.obs_dim)
        out[f"final_{aux}_weight_by_position"] = [round(w, 4) for w in ppo.barfi.sample_weights(positions)[:, 1].tolist()]
    return out


def _interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of a 95% t-interval (n >= 2)."""
    from scipy import stats

    a = np.asarray(values, dtype=np.float64)
    if len(a) < 2:
        return float(a.mean()), math.nan
    return float(a.mean()), float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))


def plot(results: dict, aux: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    learned = [arm for arm in results["runs"] if arm.startswith("barfi")]
    for arm, runs in results["runs"].items():
        curves = np.array([[np.nan if v is None else v for v in r["curve_primary_return"]] for r in runs])
        x = np.arange(curves.shape[1]) * BASE.batch_size
        left.plot(x, np.nanmean(curves, 0), label=arm)
        for i, r in enumerate(runs if arm in learned else []):
            color = f"C{list(results['runs']).index(arm)}"
            right.plot(x, r[f"curve_{aux}_weight"], color=color, alpha=0.7, label=arm if i == 0 else None)
    left.set(xlabel="env steps", ylabel="primary episodic return (training)", title=results["title"])
    left.legend()
    right.set(xlabel="env steps", ylabel=f"{aux} weight phi (per state: mean)", title="learned weights (one line per seed)")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def experiment(name: str, seeds: int, steps: int, out: Path) -> dict:
    """Every arm of ``name`` on ``seeds`` seeds; writes ``out.{json,png}`` and returns the results."""
    arms, aux, _, claim = EXPERIMENTS[name]
    runs = {arm: [run(config, aux, seed, steps) for seed in range(seeds)] for arm, config in arms.items()}
    summary = {arm: _interval([r["final_primary_return"] for r in rs]) for arm, rs in runs.items()}
    training = {
        arm: _interval([float(np.nanmean(np.array(r["curve_primary_return"], float))) for r in rs])
        for arm, rs in runs.items()
    }
    pairs = [("barfi", "fixed")] if name == "coin" else [("barfi_state", "fixed"), ("barfi_state", "barfi_global")]
    paired = {}
    for a, b in pairs:
        diffs = [x["final_primary_return"] - y["final_primary_return"] for x, y in zip(runs[a], runs[b], strict=True)]
        paired[f"{a}_minus_{b}"] = {"per_seed": diffs, "mean_ci95": _interval(diffs)}
    results = {
        "claim": claim,
        "title": "Corridor, misaligned coin" if name == "coin" else "MixedCorridor, hint aligned right / misaligned left",
        "command": f"python benchmarks/gym_controllers.py --experiment {name} --seeds {seeds} --steps {steps}",
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "threads": 1},
        "steps": steps,
        "seeds": seeds,
        "final_primary_return_mean_ci95": {arm: {"mean": m, "ci95": h} for arm, (m, h) in summary.items()},
        "training_primary_return_mean_ci95": {arm: {"mean": m, "ci95": h} for arm, (m, h) in training.items()},
        **paired,
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    plot(results, aux, out.with_suffix(".png"))
    for arm, (m, h) in summary.items():
        print(f"{name}/{arm:>13}: final primary return {m:.3f} ± {h:.3f}, training mean {training[arm][0]:.3f}")
    for key, value in paired.items():
        print(f"{name}: {key} per seed:", [round(d, 3) for d in value["per_seed"]])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", choices=[*EXPERIMENTS, "all"], default="all")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=24_000)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the results")
    args = parser.parse_args()
    for name in EXPERIMENTS if args.experiment == "all" else [args.experiment]:
        experiment(name, args.seeds, args.steps, args.out / EXPERIMENTS[name][2])


if __name__ == "__main__":
    main()
