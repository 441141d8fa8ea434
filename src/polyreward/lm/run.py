"""``polyreward train``: config -> model, task, rewards -> Trainer -> report."""

from __future__ import annotations

import ctypes
import json
import resource
import sys
from pathlib import Path

import torch

from polyreward.checkpoint import latest_checkpoint
from polyreward.config import describe, load_config
from polyreward.lm.config import TrainConfig
from polyreward.lm.model import LoraSettings, load_policy
from polyreward.lm.rollout import encode_prompts, sample_group
from polyreward.lm.tasks import build_task
from polyreward.lm.trainer import Trainer, seed_everything
from polyreward.report import render_report


def train_from_cli(config_path: str | None, settings: list[str], resume: bool, progress: bool, help_config: bool) -> int:
    if help_config:
        print("polyreward train config keys:\n" + describe(TrainConfig))
        return 0
    config = load_config(TrainConfig, config_path, settings)
    run_dir = train(config, resume=resume, progress=progress)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux
    print(f"run directory: {run_dir}  (peak memory {peak_gib:.2f} GiB)", file=sys.stderr)
    print(f"report: {render_report(run_dir)}")
    return 0


def return_freed_memory() -> None:
    """Make glibc return large freed blocks to the OS (fixed 64 KiB mmap threshold).

    glibc raises its mmap threshold after every large free, so later activation and logits buffers
    come from a heap that never shrinks; a training step then holds on to gigabytes it no longer
    uses. No effect on other C libraries.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_mmap_threshold = -3
    libc.mallopt(m_mmap_threshold, 64 * 1024)


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train with a validated config; returns the run directory."""
    return_freed_memory()
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    lora = LoraSettings(rank=config.lora_rank, alpha=2 * config.lora_rank) if config.lora_rank else None
    model, tokenizer = load_policy(config.model, config.dtype, config.device, lora, config.freeze_embeddings)
    data, rewards = build_task(config)
    return Trainer(model, tokenizer, rewards, data, config).train(resume=resume, progress=progress)


def evaluate(config: TrainConfig, run_dir: str | None = None, prompts: int = 64, samples: int = 1) -> dict:
    """Per-reward means of ``samples`` completions (greedy when 1) on ``prompts`` task prompts.

    ``run_dir``: evaluate the last checkpoint of that run instead of ``config.model``. The result is
    printed and written to ``eval.json`` in the run directory (or ``config.output_dir``).
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    model_path = str(latest_checkpoint(Path(run_dir)) / "model") if run_dir else config.model
    model, tokenizer = load_policy(model_path, config.dtype, config.device)
    data, rewards = build_task(config)
    rows = data.batch(0, min(prompts, len(data)))
    ids = encode_prompts(tokenizer, [row[data.prompt_column] for row in rows])
    model.eval()
    rollout = sample_group(
        model,
        tokenizer,
        ids,
        samples,
        config.max_new_tokens,
        temperature=0.0 if samples == 1 else config.temperature,
        top_p=config.top_p,
        generator=torch.Generator().manual_seed(config.seed),
    )
    repeated = [row for row in rows for _ in range(samples)]
    columns = {c: [row.get(c) for row in repeated] for c in data.columns}
    scored = rewards.score([r[data.prompt_column] for r in repeated], rollout.texts, group_size=samples, **columns)
    result = {
        "model": model_path,
        "task": config.task,
        "prompts": len(rows),
        "samples_per_prompt": samples,
        **{k: v for k, v in scored.metrics.items() if k.endswith(("/mean", "/applicable"))},
    }
    out_dir = Path(run_dir or config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(result, indent=2))
    return result
