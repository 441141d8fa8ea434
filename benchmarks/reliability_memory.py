"""Memory over a 1,000-step tiny-model run: resident memory every 50 steps, with and without a leak.

The run is ``tests/reliability/memory_child.py`` (tiny Llama, 2 rewards, a checkpoint every 100
steps, metrics and TensorBoard every step). A second run keeps every step's loss graph
(``--leak``, 300 steps) to show what a leak looks like on the same scale. The CI version (300 steps,
30 MB bound) is ``tests/reliability/test_memory.py``.

    .venv/bin/python benchmarks/reliability_memory.py   # writes results/reliability_memory.{json,png}
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.tiny_lm import make_tiny_model  # noqa: E402
from tests.reliability.test_memory import BOUND_MB, WARMUP, growth_after_warmup, run_memory_child  # noqa: E402

STEPS, LEAK_STEPS = 1000, 300
OUT = Path(__file__).parent / "results"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_tiny_model(tmp / "model")
        start = time.perf_counter()
        clean = run_memory_child(tmp / "clean", model, STEPS)
        seconds = time.perf_counter() - start
        leak = run_memory_child(tmp / "leak", model, LEAK_STEPS, "--leak")
    growth = growth_after_warmup(clean, WARMUP)
    summary = {
        "what": "RSS of a tiny-model LM run every 50 steps (after the step), MB",
        "steps": STEPS,
        "warmup_steps": WARMUP,
        "growth_after_warmup_mb": round(growth, 2),
        "bound_mb": BOUND_MB,
        "within_bound": growth < BOUND_MB,
        "run_seconds": round(seconds, 1),
        "clean": clean,
        "leak_control": {**leak, "growth_after_warmup_mb": round(growth_after_warmup(leak, WARMUP), 2)},
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "reliability_memory.json").write_text(json.dumps(summary, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(clean["steps"], clean["rss_mb"], marker="o", label=f"run ({growth:+.1f} MB after step {WARMUP})")
    ax.plot(leak["steps"], leak["rss_mb"], marker="x", label="control: keeps each step's loss graph")
    ax.axvline(WARMUP, color="grey", linestyle=":", label="end of warm-up")
    ax.set(xlabel="step", ylabel="RSS (MB)", title="Resident memory of a tiny-model training run")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "reliability_memory.png", dpi=120)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("clean", "leak_control")}))


if __name__ == "__main__":
    main()
