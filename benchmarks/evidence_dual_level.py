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

    .venv/bin/python benchmarks/evidence_dual_level.py      # results/evidence_dual_level.{json,png}
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


def main() -> None:
    desc = __doc__.splitlines()[0]
    task = MultiTurnTask(demo_noise=0.6)
    ev.run_script(NAME, CLAIM, desc, task, ARMS, COMPARISONS, METRICS, Path(__file__).parent / "results", NOTES)


if __name__ == "__main__":
    main()
