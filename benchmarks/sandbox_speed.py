"""Sandbox throughput: small programs per second through ``polyreward.sandbox.run``.

Target (issue "code rewards"): >= 50 small programs per second. Each configuration runs ``print(1+1)``
ROUNDS times over PROGRAMS programs, serially and from a thread pool, and the median rate is kept.
Peers in the same run, without any isolation, show what the isolation costs:

- ``subprocess.run([sys.executable, "-c", code])``: the caller's interpreter (venv, with ``site``);
- ``subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", code])``: the interpreter and flags the
  sandbox uses, so the ratio against it is the cost of the isolation alone.

One more serial run happens in a parent holding 2 GiB (like a trainer): spawning must not slow
down with the parent's size (bwrap is started with vfork; see ``sandbox.bwrap._drop_root``).

    .venv/bin/python benchmarks/sandbox_speed.py        # writes results/sandbox_speed.{json,png}
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from polyreward import sandbox

CODE = "print(1+1)"
PROGRAMS, ROUNDS = 100, 3
TARGET_PER_S = 50.0
WORKERS = (1, 2, 4)
OUT = Path(__file__).parent / "results"


def sandboxed() -> None:
    result = sandbox.run(CODE, timeout_s=5.0, memory_mb=256)
    assert result.ok and result.stdout == "2\n", result


def plain_venv() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True).stdout
    assert out == "2\n"


def plain_system() -> None:
    out = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", CODE], capture_output=True, text=True, check=True).stdout
    assert out == "2\n"


def rate(run_one: Callable[[], None], workers: int) -> dict[str, float]:
    """Programs per second: median, min and max over ROUNDS rounds of PROGRAMS programs (one warm-up)."""
    run_one()
    rates = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        if workers == 1:
            for _ in range(PROGRAMS):
                run_one()
        else:
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda _: run_one(), range(PROGRAMS)))
        rates.append(PROGRAMS / (time.perf_counter() - start))
    return {"per_s": statistics.median(rates), "min_per_s": min(rates), "max_per_s": max(rates), "workers": workers}


def bwrap_version() -> str:
    return subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    load_before = os.getloadavg()
    results: dict[str, dict[str, float]] = {}
    for workers in WORKERS:
        for name, fn in (("sandbox", sandboxed), ("plain_venv_python", plain_venv), ("plain_system_python", plain_system)):
            key = f"{name}/workers={workers}"
            results[key] = rate(fn, workers)
            print(f"{key:36s} {results[key]['per_s']:7.1f} programs/s", flush=True)
    ballast = bytearray(2 << 30)
    ballast[:: 1 << 12] = b"x" * len(ballast[:: 1 << 12])  # resident, not just reserved
    results["sandbox/workers=1/parent_2GiB"] = rate(sandboxed, 1)
    print(f"{'sandbox/workers=1/parent_2GiB':36s} {results['sandbox/workers=1/parent_2GiB']['per_s']:7.1f} programs/s")
    del ballast

    ratios = {
        f"sandbox_vs_{peer}/workers={w}": results[f"sandbox/workers={w}"]["per_s"] / results[f"{peer}/workers={w}"]["per_s"]
        for peer in ("plain_venv_python", "plain_system_python") for w in WORKERS
    }  # fmt: skip
    best = max(results[f"sandbox/workers={w}"]["per_s"] for w in WORKERS)
    record = {
        "program": CODE, "programs_per_round": PROGRAMS, "rounds": ROUNDS, "target_per_s": TARGET_PER_S,
        "meets_target_serial": results["sandbox/workers=1"]["per_s"] >= TARGET_PER_S,
        "meets_target_best": best >= TARGET_PER_S,
        "results": results, "ratios_programs_per_s": ratios,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "bwrap": bwrap_version(), "euid": os.geteuid(),
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
    }  # fmt: skip
    OUT.mkdir(exist_ok=True)
    (OUT / "sandbox_speed.json").write_text(json.dumps(record, indent=2) + "\n")
    plot(results)
    for key, value in ratios.items():
        print(f"{key:45s} {value:5.2f}x")


def plot(results: dict[str, dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    colors = ["tab:blue" if n.startswith("sandbox") else "tab:gray" for n in names]
    ax.barh(names, [results[n]["per_s"] for n in names], color=colors,
            xerr=[[results[n]["per_s"] - results[n]["min_per_s"] for n in names],
                  [results[n]["max_per_s"] - results[n]["per_s"] for n in names]])  # fmt: skip
    ax.axvline(TARGET_PER_S, color="tab:red", linestyle="--", label=f"target {TARGET_PER_S:g}/s")
    ax.set_xlabel(f"programs per second ({CODE!r}; median of {ROUNDS} x {PROGRAMS}, bars min-max)")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(OUT / "sandbox_speed.png", dpi=120)


if __name__ == "__main__":
    main()
