"""Claim 3: GDPO conditioning (easy rewards paid only when the hard one holds) vs lowering their weights.

Same task and shared settings as ``evidence_gdpo.py`` (``<s> a b`` -> digits summing to ``a + b``,
then END, within 3 tokens; rewards ``correct`` (hard), ``format`` and ``length`` (easy)). All arms
use the ``gdpo`` estimator:

- ``gdpo``: weights 1, 1, 1 (reference);
- ``gdpo_weight``: the easy rewards' weights lowered to 0.25;
- ``gdpo_condition``: ``format`` and ``length`` replaced by ``r * 1[correct = 1]``
  (``RewardBatch.condition``), weights 1.

The claim (GDPO paper): conditioning sets the priority on the hard reward more reliably than
weights. Reported: ``correct`` and joint success on a final evaluation, mean and 95% t-interval
over seeds, conditioning minus weight lowering paired by seed.

    .venv/bin/python benchmarks/evidence_conditioning.py    # results/evidence_conditioning.{json,png}
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from evidence_gdpo import SHARED, TASK

from polyreward.testbed import evidence as ev

NAME = "evidence_conditioning"
CLAIM = "Claim 3: GDPO conditioning vs weight lowering"
NOTES = "Shared settings as evidence_gdpo.py; the weight 0.25 was set a priori, not tuned."
BASE = dataclasses.replace(SHARED, estimator="gdpo")
ARMS = {
    "gdpo": BASE,
    "gdpo_weight": dataclasses.replace(BASE, weights={"format": 0.25, "length": 0.25}),
    "gdpo_condition": dataclasses.replace(BASE, condition={"format": "correct", "length": "correct"}),
}
METRICS = ["reward/correct", "joint", "reward/format", "reward/length"]
COMPARISONS = [
    ev.Comparison("gdpo_condition", "gdpo_weight", "reward/correct"),
    ev.Comparison("gdpo_condition", "gdpo_weight", "joint"),
    ev.Comparison("gdpo_condition", "gdpo", "reward/correct"),
    ev.Comparison("gdpo_weight", "gdpo", "reward/correct"),
]


def main() -> None:
    desc = __doc__.splitlines()[0]
    ev.run_script(NAME, CLAIM, desc, TASK, ARMS, COMPARISONS, METRICS, Path(__file__).parent / "results", NOTES)


if __name__ == "__main__":
    main()
