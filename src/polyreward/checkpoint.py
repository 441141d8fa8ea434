"""Checkpoints that resume exactly: model, optimizer, scheduler, RNG states, data position.

Each checkpoint is written to a temporary directory, then renamed into place with a ``COMPLETE``
marker last, so a run killed mid-save leaves either the previous checkpoint or a directory that
:func:`latest_checkpoint` reports, never a half checkpoint that loads silently.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

MARKER = "COMPLETE"


class CheckpointError(RuntimeError):
    """A run directory's checkpoints are missing, incomplete or inconsistent."""


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step:07d}"


def save_checkpoint(
    run_dir: Path, step: int, state: dict[str, Any], model, tokenizer, optimizer, scheduler, generator: torch.Generator
) -> Path:
    """Write ``run_dir/checkpoints/step-N`` atomically; ``state`` is JSON (step, data position, config)."""
    final = checkpoint_dir(run_dir, step)
    staging = final.with_name(final.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging / "model", safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(staging / "model")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, staging / "optimizer.pt")
    torch.save(
        {
            "torch": torch.get_rng_state(),
            "generator": generator.get_state(),
            "python": random.getstate(),
            "numpy": np.random.get_state(),
        },
        staging / "rng.pt",
    )
    (staging / "state.json").write_text(json.dumps(state, indent=2))
    (staging / MARKER).write_text(str(step))
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return final


def latest_checkpoint(run_dir: Path) -> Path:
    """The newest complete checkpoint of ``run_dir``; an error says what is wrong otherwise."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        raise CheckpointError(f"{run_dir}: no checkpoints/ directory - nothing to resume (start without --resume)")
    complete = sorted(
        p
        for p in root.iterdir()
        if p.name.startswith("step-") and (p / MARKER).is_file() and not p.name.endswith(".partial")
    )
    if not complete:
        found = sorted(p.name for p in root.iterdir())
        raise CheckpointError(
            f"{root}: no complete checkpoint (found {found or 'nothing'}); a save was interrupted "
            "before the first checkpoint finished - start a new run"
        )
    return complete[-1]


def load_state(checkpoint: Path) -> dict[str, Any]:
    try:
        return json.loads((checkpoint / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{checkpoint}/state.json: unreadable ({err})") from err


def check_resumed_config(checkpoint: Path, now: dict[str, Any], then: dict[str, Any]) -> None:
    """Refuse to resume a run whose config (``now``, a mapping) differs from the checkpoint's
    (``then``) in anything but the run length, output place and threads."""
    ignored = ("steps", "output_dir", "save_every", "threads")
    mismatched = {k: (v, then.get(k)) for k, v in now.items() if k not in ignored and then.get(k) != v}
    if mismatched:
        raise ValueError(f"{checkpoint}: config differs from the run being resumed (now, then): {mismatched}")


def restore_training_state(checkpoint: Path, model, optimizer, scheduler, generator: torch.Generator) -> None:
    """Load weights, optimizer, scheduler and every RNG state from ``checkpoint``."""
    from safetensors.torch import load_file

    weights = sorted((checkpoint / "model").glob("*.safetensors"))
    if not weights:
        raise CheckpointError(f"{checkpoint}/model: no safetensors weights")
    state_dict = {}
    for path in weights:
        state_dict.update(load_file(path))
    if hasattr(model, "peft_config"):  # a LoRA model saves (and restores) its adapter weights only
        from peft import set_peft_model_state_dict

        loaded = set_peft_model_state_dict(model, state_dict)
        missing = [k for k in loaded.missing_keys if "lora_" in k]
        unexpected = list(loaded.unexpected_keys)
    else:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    if unexpected or set(missing) - tied:
        raise CheckpointError(
            f"{checkpoint}: weights do not match the model (missing {sorted(set(missing) - tied)}, "
            f"unexpected {sorted(unexpected)})"
        )
    try:
        opt = torch.load(checkpoint / "optimizer.pt", weights_only=False)
        rng = torch.load(checkpoint / "rng.pt", weights_only=False)
    except (OSError, RuntimeError, EOFError) as err:
        raise CheckpointError(f"{checkpoint}: optimizer or RNG state unreadable ({err})") from err
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    torch.set_rng_state(rng["torch"])
    generator.set_state(rng["generator"])
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
