"""Claim 8: potential-based shaping keeps the optimal policy where paying progress as reward traps PPO.

Environment: ``MiniGrid-Empty-Random-6x6-v0`` (random start cell and heading, goal in the far
corner, MiniGrid's reward ``1 - 0.9 * steps / 144`` on reaching it, 144-step limit) behind a wrapper
that adds a ``shaping`` info component from the progress potential
``Phi(s) = 1 - manhattan(agent, goal) / max_distance`` (in [0, 1], 1 on the goal). Arms, same
PPO settings (single critic on ``reward + shaping``, gamma 0.99):

- ``unshaped``: ``shaping = 0``;
- ``pbrs``: ``F = gamma * Phi(s') - Phi(s)`` with ``Phi = 0`` after termination (Ng et al. 1999,
  ``polyreward.shaping.potential_shaping``, ``terminal_potential="zero"``);
- ``naive``: ``shaping = Phi(s')``, progress paid as reward: standing next to the goal pays ~0.83
  per step, more over the horizon than the one-off goal reward;
- ``pbrs_keep`` (diagnostic, added after the first run showed ``pbrs`` learning slower): the same
  ``F`` with ``terminal_potential="keep"``, so entering the goal pays ``gamma * Phi(goal) - Phi(s)``
  (about +0.16) instead of ``-Phi(s)`` (about -0.83). Here the goal is the only terminal state, so this adds a success
  bonus of ``gamma^T`` and keeps the shortest path optimal; in general it can change the policy
  (``tests/gym/test_pbrs_optimal_policy.py``).

A third component ``success`` (``info["success"]``, weight 0) only measures. Reported: success
rate, true return (MiniGrid reward only) and episode length over 20 evaluation episodes of the
greedy policy and 20 of the sampled (stochastic) policy;
env steps until the training true return (mean over the episodes of an update) first reaches 0.9,
i.e. about 16 steps per episode (a random walk reaches the goal within 144 steps too, so success
alone does not separate learning from luck); curves of the training true return,
success and episode length. Mean and 95% t-interval over seeds, effects paired by seed.

    .venv/bin/python benchmarks/evidence_pbrs.py          # results/evidence_pbrs.{json,png}
    .venv/bin/python benchmarks/evidence_pbrs.py --smoke --out /tmp/x
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path

import _evidence_gym as eg
import gymnasium as gym
import numpy as np
import torch

from polyreward.gym import PPO, GymConfig, evaluate
from polyreward.shaping import potential_shaping
from polyreward.testbed import evidence as ev

NAME = "evidence_pbrs"
CLAIM = "Claim 8: PBRS vs naive progress reward vs unshaped (MiniGrid-Empty-Random-6x6)"
ENV_ID = "polyreward-evidence/ShapedEmpty-v0"
BASE_ENV = "MiniGrid-Empty-Random-6x6-v0"
STEPS = 40_960  # tuned once, on the unshaped arm (seed 0): it reached a training return of 0.9 at ~20k steps
SHARED = GymConfig(
    env_id=ENV_ID,
    info_rewards=["shaping", "success"],
    weights={"shaping": 1.0, "success": 0.0},
    critic="single",
)
SHAPINGS = ("unshaped", "pbrs", "naive", "pbrs_keep")
ARMS = {s: eg.Arm(dataclasses.replace(SHARED, env_kwargs={"shaping": s, "gamma": SHARED.gamma}), STEPS) for s in
        SHAPINGS}  # fmt: skip
EVAL_EPISODES = 20
CURVES = ["reward/reward/episodic_return", "reward/success/episodic_return", "charts/episodic_length"]
COMPARISONS = [
    ev.Comparison("pbrs", "unshaped", "eval/true_return"),
    ev.Comparison("pbrs", "unshaped", "eval/success"),
    ev.Comparison("pbrs", "unshaped", "eval/sampled_true_return"),
    ev.Comparison("pbrs", "unshaped", "train/steps_to_return_0.9", better="lower"),
    ev.Comparison("naive", "unshaped", "eval/true_return"),
    ev.Comparison("naive", "unshaped", "eval/success"),
    ev.Comparison("naive", "unshaped", "eval/sampled_success"),
    ev.Comparison("pbrs", "naive", "eval/true_return"),
    ev.Comparison("pbrs_keep", "unshaped", "train/steps_to_return_0.9", better="lower"),
    ev.Comparison("pbrs_keep", "pbrs", "train/steps_to_return_0.9", better="lower"),
    ev.Comparison("pbrs_keep", "unshaped", "eval/true_return"),
]


class ProgressShaping(gym.Wrapper):
    """Adds ``info["shaping"]`` (per the arm) and ``info["success"]`` (1 on reaching the goal) to a
    MiniGrid env; the env's own reward passes through unchanged."""

    def __init__(self, env: gym.Env, shaping: str, gamma: float):
        super().__init__(env)
        if shaping not in SHAPINGS:
            raise ValueError(f"shaping={shaping!r} is not one of {list(SHAPINGS)}")
        self.shaping, self.gamma, self.phi = shaping, gamma, 0.0

    def potential(self) -> float:
        """``1 - manhattan(agent, goal) / (width + height - 6)``: 0 in the far interior corner, 1 on the goal."""
        base = self.env.unwrapped
        goal = next((x, y) for x in range(base.width) for y in range(base.height) if _is_goal(base.grid.get(x, y)))
        distance = abs(int(base.agent_pos[0]) - goal[0]) + abs(int(base.agent_pos[1]) - goal[1])
        return 1.0 - distance / (base.width + base.height - 6)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.phi = self.potential()
        return obs, info | {"shaping": 0.0, "success": 0.0}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        phi_next = self.potential()
        if self.shaping in ("pbrs", "pbrs_keep"):
            shaped = potential_shaping(
                torch.zeros(1, dtype=torch.float64),
                torch.tensor([self.phi, phi_next], dtype=torch.float64)[:, None],
                torch.tensor([[terminated]]),
                self.gamma,
                "zero" if self.shaping == "pbrs" else "keep",
            )
            shaping = float(shaped)
        else:
            shaping = phi_next if self.shaping == "naive" else 0.0
        self.phi = phi_next
        return obs, reward, terminated, truncated, info | {"shaping": shaping, "success": float(terminated and reward > 0)}


def _is_goal(cell) -> bool:
    return cell is not None and cell.type == "goal"


def make_shaped(shaping: str = "unshaped", gamma: float = 0.99, base_env: str = BASE_ENV) -> gym.Env:
    """The registered entry point: ``base_env`` behind :class:`ProgressShaping`."""
    import minigrid  # noqa: F401  (registers the MiniGrid ids)

    return ProgressShaping(gym.make(base_env), shaping, gamma)


gym.register(ENV_ID, entry_point=make_shaped, disable_env_checker=True)


def evaluate_arm(ppo: PPO, history: list[dict[str, float]], episodes: int = EVAL_EPISODES) -> dict[str, float]:
    """Greedy and sampled policy over ``episodes`` episodes each; env steps until the training true
    return reached 0.9."""
    greedy, sampled = evaluate(ppo, episodes=episodes), evaluate(ppo, episodes=episodes, deterministic=False)
    return {
        "eval/success": greedy.mean["success"],
        "eval/true_return": greedy.mean["reward"],
        "eval/length": float(np.mean(greedy.lengths)),
        "eval/sampled_success": sampled.mean["success"],
        "eval/sampled_true_return": sampled.mean["reward"],
        "eval/sampled_length": float(np.mean(sampled.lengths)),
        "train/steps_to_return_0.9": eg.first_step_at(history, ppo.config.batch_size, "reward/reward/episodic_return", 0.9),
    }


def main() -> None:
    torch.set_num_threads(1)
    args = ev.parse_args(__doc__.splitlines()[0], Path(__file__).parent / "results", default_seeds=5)
    arms = {k: dataclasses.replace(v, steps=512) for k, v in ARMS.items()} if args.smoke else ARMS
    evaluate_fn = functools.partial(evaluate_arm, episodes=2 if args.smoke else EVAL_EPISODES)
    notes = (
        f"PPO defaults except critic=single; {STEPS} env steps per run (4 envs x 128 steps per update), tuned once "
        "on the unshaped arm; the same settings for every arm. Evaluation: greedy policy, "
        f"{EVAL_EPISODES} episodes, random starts."
    )
    report = eg.report(CLAIM, " ".join(sys.argv), arms, range(args.seeds), COMPARISONS, CURVES, evaluate_fn, notes)
    eg.write(report, args.out, NAME, CURVES)


if __name__ == "__main__":
    main()
