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

``--variant hard`` (``results/evidence_hdpo_hard.{json,png}``): the regime HDPO's abstract describes,
where accuracy keeps varying within groups for most of the run, so a mild tool penalty is subsumed by
the accuracy variance and only an aggressive one moves tool use. ``ToolTask(n_args=3,
demo_noise=0.5, demo_tool_prob=0.8)``: three arguments, a sloppy base model (each copied digit of the
demonstrations random with probability 0.5) that calls the tool on 80 % of all prompts. Arms:
``hdpo`` as above and GRPO with lambda = 0.05, 0.2 and 0.5 (0.5 is aggressive: with accuracy near
its starting 0.1, a tool call costs more than it earns). The variant's settings were fixed on a
reference arm that is not compared (GRPO on ``0.9 correct + 0.1 format``, no tool term, seed 100):
noise 0.8 left it at 0.13 accuracy, noise 0.5 took it from 0.12 to 0.86 over the 150 updates.

    .venv/bin/python benchmarks/evidence_hdpo.py            # results/evidence_hdpo.{json,png}
    .venv/bin/python benchmarks/evidence_hdpo.py --variant hard --seeds 6
    .venv/bin/python benchmarks/evidence_hdpo.py --variant hard_reference --seeds 6   # context only
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


HARD_LAMBDAS = (0.05, 0.2, 0.5)
HARD = {
    "name": "evidence_hdpo_hard",
    "claim": "Claim 2 (hard variant): HDPO vs scalarized tool penalty, sloppy 3-argument base",
    "task": ToolTask(n_args=3, demo_noise=0.5, demo_tool_prob=0.8),
    "notes": (
        "ToolTask(n_args=3, demo_noise=0.5, demo_tool_prob=0.8); 300 pre-training updates, then 150 RL updates (lr "
        "3e-3, 2 epochs, 16 prompts x G = 8), as the default variant. Task settings fixed on a reference arm not "
        "compared (GRPO on 0.9 correct + 0.1 format, no tool term, seed 100; demo noise 0.8 did not learn, 0.5 reached "
        "0.86 accuracy); arms and lambdas fixed before the compared runs."
    ),
    "arms": {
        "hdpo": ARMS["hdpo"],
        **{
            f"grpo_pen{lam}": dataclasses.replace(
                SHARED,
                estimator="grpo",
                rewards=("correct", "format", "tool_calls"),
                weights=ACCURACY | {"tool_calls": -lam},
            )
            for lam in HARD_LAMBDAS
        },
    },
    "metrics": [*METRICS, "correct/visible"],
    "comparisons": [
        c
        for base in (f"grpo_pen{lam}" for lam in HARD_LAMBDAS)
        for c in (
            ev.Comparison("hdpo", base, "reward/correct"),
            ev.Comparison("hdpo", base, "reward/tool_calls", better="lower"),
            ev.Comparison("hdpo", base, "tool_calls/visible", better="lower"),
            ev.Comparison("hdpo", base, "correct/hidden"),
            ev.Comparison("hdpo", base, "train_mean/reward/correct"),
            ev.Comparison("hdpo", base, "train_mean/reward/tool_calls", better="lower"),
            ev.Comparison("hdpo", base, "train_mean/tool_calls/visible", better="lower"),
        )
    ],
}

# The tuning reference of the hard variant (no tool term), run on the compared seeds afterwards for
# context only: it shows what keeping the tool is worth; it enters no comparison.
HARD_REFERENCE = HARD | {
    "name": "evidence_hdpo_hard_reference",
    "claim": "Claim 2 (hard variant): the tuning reference, GRPO without a tool term (context, not compared)",
    "arms": {"grpo_nopen": dataclasses.replace(SHARED, estimator="grpo", rewards=("correct", "format"), weights=ACCURACY)},
    "comparisons": [],
}


def main() -> None:
    desc = __doc__.splitlines()[0]
    ev.run_script(
        NAME, CLAIM, desc, ToolTask(), ARMS, COMPARISONS, METRICS, Path(__file__).parent / "results", NOTES,
        variants={"hard": HARD, "hard_reference": HARD_REFERENCE},
    )  # fmt: skip


if __name__ == "__main__":
    main()
