"""``polyreward train``: config -> model, task, rewards -> Trainer -> report."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

from polyreward.config import describe, load_config
from polyreward.lm.config import TrainConfig
from polyreward.lm.model import LoraSettings, load_policy
from polyreward.lm.tasks import build_task
from polyreward.lm.trainer import Trainer, seed_everything
from polyreward.report import render_report


def train_from_cli(config_path: str | None, settings: list[str], resume: bool, progress: bool, help_config: bool) -> int:
    if help_config:
        print("polyreward train config keys:\n" + describe(TrainConfig))
        return 0
    config = load_config(TrainConfig, config_path, settings)
    run_dir = train(config, resume=resume, progress=progress)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"run directory: {run_dir}  (peak memory {peak_gb:.2f} GB)", file=sys.stderr)
    print(f"report: {render_report(run_dir)}")
    return 0


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train with a validated config; returns the run directory."""
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    lora = LoraSettings(rank=config.lora_rank, alpha=2 * config.lora_rank) if config.lora_rank else None
    model, tokenizer = load_policy(config.model, config.dtype, config.device, lora)
    data, rewards = build_task(config)
    return Trainer(model, tokenizer, rewards, data, config).train(resume=resume, progress=progress)
