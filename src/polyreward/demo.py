"""The built-in demonstration: every sample-level estimator side by side on one reward batch."""

from __future__ import annotations

from polyreward.advantages.registry import compute
from polyreward.batch import RewardBatch
from polyreward.diagnostics import diagnose

# (label, estimator, params) shown side by side
DEMO_ESTIMATORS: list[tuple[str, str, dict[str, object]]] = [
    ("grpo", "grpo", {}),
    ("dr_grpo", "dr_grpo", {}),
    ("rloo", "rloo", {}),
    ("reinf++", "reinforce_pp", {"baseline": "group"}),
    ("gdpo", "gdpo", {}),
    ("hdpo", "hdpo", {"conditional": "brevity", "gate": "correct"}),
    ("dpa", "directional", {"direction": [1.0, 0.3, 0.3]}),
]


def demo_batch() -> RewardBatch:
    """Three prompts x four completions, rewarded for correctness, format and brevity.

    Prompt 0 mixes everything; in prompt 1 every answer is correct, so only format and brevity
    vary; in prompt 2 all answers are wrong and one completion is missing its brevity score.
    """
    rewards = [
        [1, 1, 0.9],
        [1, 0, 0.4],
        [0, 1, 0.8],
        [0, 0, 0.1],
        [1, 1, 0.2],
        [1, 1, 0.7],
        [1, 0, 0.9],
        [1, 1, 0.7],
        [0, 1, 0.5],
        [0, 0, None],
        [0, 1, 0.5],
        [0, 0, 0.9],
    ]
    return RewardBatch(
        rewards=rewards,
        names=["correct", "format", "brevity"],
        group_ids=[0] * 4 + [1] * 4 + [2] * 4,
        weights=[1.0, 0.5, 0.25],
    )


def side_by_side(batch: RewardBatch, estimators=DEMO_ESTIMATORS) -> str:
    """A table: one row per sample, its rewards, then each estimator's advantage."""
    results = [(label, compute(name, batch, **params)) for label, name, params in estimators]
    header = ["group", *batch.names, *(label for label, _ in results)]
    rows = []
    for i in range(batch.num_samples):
        cells = [str(int(batch.group_ids[i]))] + [f"{float(v):.2f}" for v in batch.rewards[i]]
        cells += [f"{float(r.advantages[i]):+.3f}" for _, r in results]
        rows.append(cells)
    widths = [max(len(h), *(len(r[c]) for r in rows)) for c, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def run_demo() -> str:
    """The full demonstration text: the side-by-side table and diagnostics for grpo and gdpo."""
    batch = demo_batch()
    parts = [
        f"{batch}\nweights: " + ", ".join(f"{n}={float(w):g}" for n, w in zip(batch.names, batch.weights, strict=True)),
        "",
        "advantages per estimator (nan = not applicable):",
        side_by_side(batch),
    ]
    for name in ("grpo", "gdpo"):
        parts += ["", diagnose(batch, name).table()]
    return "\n".join(parts)
