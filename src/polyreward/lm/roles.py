"""Several Trainers playing rounds together (self-play roles): per-completion scoring, metrics per role,
and one run directory whose checkpoints hold every role (used by :mod:`polyreward.lm.selfplay` and
:mod:`polyreward.lm.experience`)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from polyreward.batch import RewardBatch
from polyreward.checkpoint import (
    MARKER,
    CheckpointError,
    check_resumed_config,
    checkpoint_dir,
    latest_checkpoint,
    load_state,
    restore_training_state,
)
from polyreward.config import ConfigError, describe, from_mapping, load_config, option, to_mapping
from polyreward.lm.config import TrainConfig
from polyreward.lm.model import DEFAULT_MODEL, Dtype
from polyreward.lm.rollout import Rollout
from polyreward.lm.trainer import Trainer, TrainState
from polyreward.runlog import RunLog, open_run


def score_each(trainer: Trainer, prompts: list, rollout: Rollout, **columns: list) -> tuple[RewardBatch, dict[str, float]]:
    """Like ``Trainer.score``, but every column holds one value per completion (``[N]``), not per prompt."""
    g = rollout.group_size
    repeated = [p for p in prompts for _ in range(g)]
    ids = [i[m].tolist() for i, m in zip(rollout.completion_ids, rollout.completion_mask, strict=True)]
    scored = trainer.rewards.score(
        repeated, rollout.texts, group_size=g, step=trainer.state.step, completion_ids=ids, **columns
    )
    return dataclasses.replace(scored.batch, response_mask=rollout.completion_mask), scored.metrics


def group_rates(batch: RewardBatch, name: str, group_size: int) -> list[float]:
    """Per-group mean of reward ``name`` (``[N]`` -> ``[N / G]``); a group with no value gives 0."""
    if name not in batch.names:
        raise ValueError(f"pass reward {name!r} is not one of the Solver's rewards {batch.names}")
    column = batch.rewards[:, batch.names.index(name)].reshape(-1, group_size)
    return torch.nan_to_num(torch.nanmean(column, dim=1), nan=0.0).tolist()


def has_signal(batch: RewardBatch) -> bool:
    """Some group has a weighted reward component that varies (else every advantage is 0)."""
    from polyreward.groups import group_mean_std

    weighted = torch.nan_to_num(batch.rewards, nan=0.0) * batch.weights
    _, std, count = group_mean_std(weighted, batch.group_index, batch.num_groups)
    return bool(((std > 0) & (count > 1)).any())


def prefixed(role: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{role}/{k}": v for k, v in metrics.items()}


class RoleLoop:
    """Rounds over named Trainers sharing one run directory: metrics, checkpoints of every role, resume.

    Subclasses implement :meth:`play_round` and keep their own state in :meth:`state_dict`. A round's
    checkpoint is ``<output_dir>/checkpoints/step-R`` (its state, ``COMPLETE`` last) plus each
    role's ``<output_dir>/<role>/checkpoints/step-R``.
    """

    def __init__(self, roles: dict[str, Trainer], config: Any):
        self.roles, self.config = roles, config
        self.run_dir = Path(config.output_dir)
        self.round = 0
        self.samples: list[dict[str, Any]] = []

    def play_round(self) -> dict[str, float]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def train(self, resume: bool = False, progress: bool = True) -> Path:
        """Play to ``config.steps`` rounds; with ``resume`` continue from the last complete round."""
        from tqdm.auto import tqdm

        cfg = self.config
        if resume:
            self._resume()
        log = open_run(self.run_dir, cfg, resuming=resume)
        bar = tqdm(total=cfg.steps, initial=self.round, desc="rounds", disable=not progress, dynamic_ncols=True)
        try:
            while self.round < cfg.steps:
                for trainer in self.roles.values():
                    trainer.state.step = self.round  # reward weight schedules read it
                metrics = self.play_round()
                log.log(self.round, metrics)
                log.log_samples(self.round, self.samples)
                self.round += 1
                if self.round == cfg.steps or (cfg.save_every and self.round % cfg.save_every == 0):
                    self.save()
                bar.update(1)
        finally:
            bar.close()
            log.close()
        return self.run_dir

    def save(self) -> Path:
        """Every role's checkpoint, then this loop's state with its ``COMPLETE`` marker (atomic rename)."""
        for trainer in self.roles.values():
            trainer.state.step = self.round
            trainer.save()
        final = checkpoint_dir(self.run_dir, self.round)
        staging = final.with_name(final.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        state = {"round": self.round, "config": to_mapping(self.config), **self.state_dict()}
        (staging / "state.json").write_text(json.dumps(state))
        (staging / MARKER).write_text(str(self.round))
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        return final

    def _resume(self) -> None:
        checkpoint = latest_checkpoint(self.run_dir)
        saved = load_state(checkpoint)
        check_resumed_config(checkpoint, to_mapping(self.config), saved["config"])
        self.round = saved["round"]
        for role, trainer in self.roles.items():
            role_checkpoint = checkpoint_dir(trainer.run_dir, self.round)
            if not (role_checkpoint / MARKER).is_file():
                raise CheckpointError(f"{role_checkpoint}: the {role}'s checkpoint of round {self.round} is missing")
            restore_training_state(role_checkpoint, trainer.model, trainer.optimizer, trainer.scheduler, trainer.generator)
            trainer.state = TrainState(step=self.round, position=load_state(role_checkpoint)["position"])
        self.load_state_dict(saved)
        RunLog(self.run_dir, tensorboard=False).truncate_after(self.round - 1)


# ---------------------------------------------------------------------------------------------- configs and loading


@dataclasses.dataclass
class RoleLoopConfig:
    """The fields every multi-role config shares: the base model both roles start from and the run."""

    model: str = option(DEFAULT_MODEL, "base model of both roles: local HF directory or 'smollm2-135m'")
    dtype: Dtype = option("float32", "parameter dtype: float32 or bfloat16")  # noqa: RUF009
    lora_rank: int = option(0, "LoRA rank via peft for both roles; 0 trains all weights")
    freeze_embeddings: bool = option(True, "keep the token embeddings fixed in both roles")
    steps: int = option(20, "rounds")
    seed: int = option(0, "seed for data order, sampling and initialization")
    threads: int = option(0, "torch CPU threads (0 = torch's default)")
    device: str = option("cpu", "torch device")
    save_every: int = option(10, "checkpoint every N rounds (and at the end); 0 = only at the end")


ROLE_SHARED = ("model", "dtype", "device", "seed", "threads", "steps", "lora_rank", "freeze_embeddings")
_RESERVED = (*ROLE_SHARED, "trainer", "output_dir", "save_every", "samples_to_log", "task", "task_size", "rewards")


def check_counts(config: Any, at_least_one: tuple[str, ...] = ()) -> None:
    """The checks every multi-role config shares, plus ``at_least_one`` of its own count fields."""
    for name in ("task_size", "steps", *at_least_one):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name}: must be >= 1, got {getattr(config, name)}")
    for name in ("threads", "save_every", "samples_to_log", "lora_rank"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name}: must be >= 0, got {getattr(config, name)}")


def role_config(config: Any, role: str, defaults: dict[str, Any]) -> TrainConfig:
    """A role's TrainConfig: the shared fields of ``config``, the role's ``defaults``, then the overrides in
    the field named ``role``; it checkpoints in ``<output_dir>/<role>``. Errors name the role."""
    overrides = getattr(config, role)
    reserved = sorted(set(overrides) & set(_RESERVED))
    if reserved:
        raise ConfigError(f"{role}: {reserved} are set for every role; set them at the top level")
    values = {k: getattr(config, k) for k in ROLE_SHARED} | defaults | overrides
    values.update(output_dir=str(Path(config.output_dir) / role), save_every=0, samples_to_log=0)
    try:
        return from_mapping(TrainConfig, values, role)
    except ConfigError as err:  # a TrainConfig check names its field only: add the role
        message = str(err)
        raise ConfigError(message if message.startswith(f"{role}:") else f"{role}: {message}") from None


def load_role(config: Any, train_config: TrainConfig, data, rewards: list) -> Trainer:
    """A Trainer on a fresh copy of ``config.model``; every role starts from the same weights (LoRA too)."""
    from polyreward.lm.model import LoraSettings, load_policy
    from polyreward.lm.trainer import seed_everything
    from polyreward.rewards import RewardSet

    lora = LoraSettings(rank=config.lora_rank, alpha=2 * config.lora_rank) if config.lora_rank else None
    seed_everything(config.seed)
    model, tokenizer = load_policy(config.model, config.dtype, config.device, lora, config.freeze_embeddings)
    seed_everything(config.seed)
    return Trainer(model, tokenizer, RewardSet(rewards), data, train_config)


def run_from_cli(cls: type, build, config_path, settings: list[str], resume: bool, progress: bool, help_config: bool) -> int:
    """``polyreward train CONFIG`` for a multi-role trainer: ``build(config)`` returns its :class:`RoleLoop`."""
    import sys

    if help_config:
        print(f"polyreward train ({cls.__name__}) config keys:\n" + describe(cls))
        return 0
    config = load_config(cls, config_path, settings)
    if config.threads:
        torch.set_num_threads(config.threads)
    run_dir = build(config).train(resume=resume, progress=progress)
    print(f"run directory: {run_dir}  (metrics: {run_dir / 'metrics.jsonl'})", file=sys.stderr)
    print(run_dir)
    return 0
