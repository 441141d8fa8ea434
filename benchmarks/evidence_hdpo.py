"""Claim 2: HDPO (accuracy + conditional tool-efficiency channels) vs a scalarized tool penalty.

Task (``ToolTask``): ``<s> a b`` -> digits summing to ``a + b``, then END; on half of the prompts
one argument is shown as ``#`` and a TOOL token makes the environment reveal it. The policy
starts from a brief supervised pre-training on demonstrations that call the tool on half of
all prompts, hidden or not (tool overuse), so RL has to learn when a tool call is worth it.

Arms (same pre-training, optimizer and batch; only reward handling differs):

- ``hdpo``: ``r_acc = 0.9 correct + 0.1 format`` by GRPO, plus HDPO's conditional channel
  ``1 / (T + 1)`` normalized among the correct rollouts of a prompt, loss weight 0.15 (paper default);
- ``grpo_pen0.05`` / ``grpo_pen0.2``: GRPO on ``0.9 correct + 0.1 format - lambda * T``.

Reported: accuracy and tool calls on hidden and visible prompts (final evaluation of 256 prompts)
and their averages over training (learning speed), mean and 95% t-interval over seeds.

    .venv/bin/python benchmarks/evidence_hdpo.py            # results/evidence_hdpo.{json,png}
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from polyreward.testbed import ToolTask, TrainConfig
from polyreward.testbed import evidence as ev

NAME = "evidence_hdpo"
CLAIM = "Claim 2: HDPO vs scalarized tool penalty"
NOTES = (
    "300 supervised pre-training updates on demonstrations, then 150 RL updates (lr 3e-3, 2 epochs, 16 prompts x "
    "G = 8), chosen a priori; the lambdas bracket HDPO's effective tool weight. Not tuned per arm."
)
SHARED = TrainConfig(steps=150, lr=3e-3, epochs=2, pretrain_steps=300)
ACCURACY = {"correct": 0.9, "format": 0.1}
ARMS = {
    "hdpo": dataclasses.replace(
        SHARED,
        estimator="hdpo",
        rewards=("correct", "format", "tool_efficiency"),
        weights=ACCURACY,
        estimator_params={"conditional": "tool_efficiency", "gate": "correct", "conditional_weight": 0.15},
    ),
    **{
        f"grpo_pen{lam}": dataclasses.replace(
            SHARED, estimator="grpo", rewards=("correct", "format", "tool_calls"), weights=ACCURACY | {"tool_calls": -lam}
        )
        for lam in (0.05, 0.2)
    },
}
METRICS = ["reward/correct", "reward/tool_calls", "correct/hidden", "tool_calls/visible", "tool_calls/hidden"]
COMPARISONS = [
    c
    for base in ("grpo_pen0.05", "grpo_pen0.2")
    for c in (
        ev.Comparison("hdpo", base, "reward/correct"),
        ev.Comparison("hdpo", base, "reward/tool_calls", better="lower"),
        ev.Comparison("hdpo", base, "train_mean/reward/correct"),
        ev.Comparison("hdpo", base, "train_mean/reward/tool_calls", better="lower"),
    )
]


def main() -> None:
    desc = __doc__.splitlines()[0]
    ev.run_script(NAME, CLAIM, desc, ToolTask(), ARMS, COMPARISONS, METRICS, Path(__file__).parent / "results", NOTES)


if __name__ == "__main__":
    main()
