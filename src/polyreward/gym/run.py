"""``polyreward train`` / ``polyreward eval`` for configs with ``trainer: gym``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from polyreward.config import ConfigError, describe, load_config, to_mapping
from polyreward.gym.config import GymConfig
from polyreward.gym.evaluate import evaluate as evaluate_policy
from polyreward.gym.ppo import PPO
from polyreward.report import render_report


def train(config: GymConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train ``config`` (``resume``: continue ``output_dir`` from its last checkpoint); returns the run directory."""
    run_dir = Path(config.output_dir)
    has_run = (run_dir / "checkpoints").is_dir()
    if has_run and not resume:
        raise ConfigError(f"output_dir: {run_dir} already holds a run; pass --resume to continue it or choose another")
    if resume and not has_run:
        raise ConfigError(f"--resume: {run_dir} holds no checkpoints to continue")
    ppo = PPO.load(run_dir, **to_mapping(config)) if resume else PPO(config.env_id, config)
    try:
        ppo.learn(config.total_steps, progress=progress)
    finally:
        ppo.env.close()
    return run_dir


def evaluate(config: GymConfig, run_dir: str | None = None, episodes: int = 10) -> dict:
    """Mean return per component (and the weighted return) of the greedy policy over ``episodes``.

    ``run_dir``: its last checkpoint (default ``config.output_dir``). Written to ``eval.json`` there.
    """
    path = Path(run_dir or config.output_dir)
    ppo = PPO.load(path)
    try:
        result = evaluate_policy(ppo, episodes=episodes)
    finally:
        ppo.env.close()
    out = {
        "run": str(path),
        "env_id": ppo.config.env_id,
        "step": ppo.global_step,
        "episodes": len(result.returns),
        **{f"return/{name}": value for name, value in result.mean.items()},
        "return/weighted": result.weighted(
            {n: w for n, w in zip(ppo.names, ppo.weights.tolist(), strict=True) if n in result.names}
        ),
        "episode_length": float(result.lengths.mean()),
    }
    (path / "eval.json").write_text(json.dumps(out, indent=2))
    return out


def train_from_cli(config_path: str | None, settings: list[str], resume: bool, progress: bool, help_config: bool) -> int:
    if help_config:
        print("polyreward train config keys (trainer: gym):\n" + describe(GymConfig))
        return 0
    config = load_config(GymConfig, config_path, settings)
    run_dir = train(config, resume=resume, progress=progress)
    print(f"run directory: {run_dir}", file=sys.stderr)
    print(f"report: {render_report(run_dir)}")
    return 0
