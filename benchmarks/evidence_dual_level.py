"""Claim 4: MatchTIR's dual-level advantage (turn + trajectory) vs trajectory-only on a multi-turn task.

Task (``MultiTurnTask``): ``<s> o0 o1``; in turn t the policy must output digits summing to
``o_t + o_{t+1}`` and end the turn with ``|``; after each ``|`` but the last the environment injects
the next observation. Turn reward: 1 if the turn's sum matches, else 0; the trajectory score
``match`` is their sum. The policy starts from a brief supervised pre-training on noisy
demonstrations (each copied digit replaced by a random one with probability 0.6).

Arms (same pre-training, optimizer and batch):

- ``trajectory``: GRPO on ``match``, the same advantage on every token;
- ``dual_level``: MatchTIR's ``(A_traj + A_turn) / 2`` (lambda = 0.9), turn t's value on turn t's tokens.

Reported: success (all turns right), ``match`` and per-turn accuracy on a final evaluation of 256
prompts, and averages over training, mean and 95% t-interval over seeds.

``--variant hard`` (``results/evidence_dual_level_hard.{json,png}``): a longer horizon where per-turn
credit should matter more: 6 turns (``max_new_tokens`` 28), demonstration noise 0.9 and 100 RL updates.
Fixed on a reference arm that is not compared (``dr_grpo`` on ``match``, seed 100, 150 updates):
6 turns at noise 0.8 and 8 turns at noise 0.85 reached 0.97 / 0.95 success, noise 1.0 did not learn
(0.0), 6 turns at noise 0.9 was at 0.63 success after 75 updates and 0.96 after 150, hence 100 updates.

    .venv/bin/python benchmarks/evidence_dual_level.py      # results/evidence_dual_level.{json,png}
    .venv/bin/python benchmarks/evidence_dual_level.py --variant hard --seeds 6
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from polyreward.testbed import MultiTurnTask, TrainConfig
from polyreward.testbed import evidence as ev

NAME = "evidence_dual_level"
CLAIM = "Claim 4: dual-level vs trajectory-only advantages"
NOTES = (
    "300 supervised pre-training updates, then 150 RL updates (lr 3e-3, 2 epochs, 16 prompts x G = 8). A first run "
    "with demonstration noise 0.3 and 200 updates saturated (both arms 99% success, results/"
    "evidence_dual_level_saturated.json); this setting (noise 0.6, 150 updates) was changed for both arms to move "
    "off the ceiling, not tuned on either."
)
SHARED = TrainConfig(steps=150, lr=3e-3, epochs=2, pretrain_steps=300)
ARMS = {
    "trajectory": dataclasses.replace(SHARED, estimator="grpo", rewards=("match",)),
    "dual_level": dataclasses.replace(SHARED, estimator="dual_level", estimator_params={"lam": 0.9}),
}
METRICS = ["success", "reward/match", "turn1", "turn3"]
COMPARISONS = [ev.Comparison("dual_level", "trajectory", m) for m in ("success", "reward/match", "train_mean/success")]


HARD_SHARED = dataclasses.replace(SHARED, steps=100)
HARD = {
    "name": "evidence_dual_level_hard",
    "claim": "Claim 4 (hard variant): dual-level vs trajectory-only, 6 turns",
    "task": MultiTurnTask(n_turns=6, max_new_tokens=28, demo_noise=0.9),
    "notes": (
        "MultiTurnTask(n_turns=6, max_new_tokens=28, demo_noise=0.9); 300 pre-training updates, then 100 RL updates "
        "(lr 3e-3, 2 epochs, 16 prompts x G = 8). Fixed on a reference arm not compared (dr_grpo on match, seed 100): "
        "6 turns / noise 0.8 and 8 turns / noise 0.85 saturated (0.97, 0.95 success after 150 updates), noise 1.0 did "
        "not learn, 6 turns / noise 0.9 reached 0.63 after 75 updates and 0.96 after 150."
    ),
    "arms": {
        "trajectory": dataclasses.replace(HARD_SHARED, estimator="grpo", rewards=("match",)),
        "dual_level": dataclasses.replace(HARD_SHARED, estimator="dual_level", estimator_params={"lam": 0.9}),
    },
    "metrics": ["success", "reward/match", "turn1", "turn6"],
    "comparisons": [
        ev.Comparison("dual_level", "trajectory", m)
        for m in ("success", "reward/match", "train_mean/success", "train_mean/reward/match")
    ],
}


def main() -> None:
    desc = __doc__.splitlines()[0]
    task = MultiTurnTask(demo_noise=0.6)
    ev.run_script(
        NAME, CLAIM, desc, task, ARMS, COMPARISONS, METRICS, Path(__file__).parent / "results", NOTES,
        variants={"hard": HARD},
    )  # fmt: skip


if __name__ == "__main__":
    main()
