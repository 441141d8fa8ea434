"""A long tiny-model training run that reports its resident memory every ``every`` steps.

    python -m tests.reliability.memory_child RUN_DIR STEPS MODEL_DIR [--every N] [--leak]

Prints one JSON object: ``{"steps": [...], "rss_mb": [...]}`` (RSS after each sampled step).
``--leak`` keeps every step's per-token surrogate loss, with its autograd graph: a deliberate leak
that shows what the memory test catches.
"""

from __future__ import annotations

import json
import os
import sys


def rss_mb() -> float:
    """Resident set size of this process in MB (psutil when installed, else /proc/self/statm)."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    return psutil.Process().memory_info().rss / 1e6


def main(argv: list[str]) -> None:
    import torch

    from polyreward.lm import trainer as trainer_module
    from polyreward.lm.model import load_policy
    from polyreward.lm.run import return_freed_memory
    from polyreward.lm.trainer import Trainer
    from tests.e2e.tiny_lm import ROWS, is_short, says_yes, tiny_config

    run_dir, steps, model_dir = argv[0], int(argv[1]), argv[2]
    every = int(argv[argv.index("--every") + 1]) if "--every" in argv else 50
    if "--leak" in argv:
        kept, surrogate = [], trainer_module.clipped_surrogate

        def leaky(*args, **kwargs):
            out = surrogate(*args, **kwargs)
            kept.append(out[0])
            return out

        trainer_module.clipped_surrogate = leaky
    return_freed_memory()  # as `polyreward train` does
    torch.set_num_threads(1)
    config = tiny_config(run_dir, model_dir, steps=steps, save_every=100)
    model, tokenizer = load_policy(config.model)
    trainer = Trainer(model, tokenizer, [says_yes, is_short], ROWS, config)
    sampled_steps, samples, step = [], [], trainer.step

    def step_and_sample():
        metrics = step()
        if (trainer.state.step + 1) % every == 0:
            sampled_steps.append(trainer.state.step + 1)
            samples.append(round(rss_mb(), 2))
        return metrics

    trainer.step = step_and_sample
    trainer.train(progress=False)
    print(json.dumps({"steps": sampled_steps, "rss_mb": samples}))


if __name__ == "__main__":
    main(sys.argv[1:])
