"""Module-level reward functions for process-pool tests (they must be importable by workers)."""

import os
import time


def length_reward(prompts, completions, **kwargs):
    return [float(len(c)) for c in completions]


def sleepy(prompts, completions, **kwargs):
    time.sleep(30)
    return [1.0 for _ in completions]


def fails_on_x(prompts, completions, **kwargs):
    return [1 / 0 if c == "x" else 1.0 for c in completions]


def busy_count(prompts, completions, **kwargs):
    """CPU-bound: ~n_loops iterations per completion."""
    out = []
    for c in completions:
        total = 0
        for i in range(int(c)):
            total += i % 7
        out.append(float(total))
    return out


def slow_worker_pid(prompts, completions, **kwargs):
    """Takes long enough per chunk that every worker of the pool gets chunks."""
    time.sleep(0.3)
    return [float(os.getpid()) for _ in completions]
