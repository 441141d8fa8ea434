"""The language-model trainer's config: one flat, typed dataclass."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from polyreward.config import ConfigError, option
from polyreward.lm.loss import Reduction
from polyreward.lm.model import DEFAULT_MODEL, Dtype


@dataclasses.dataclass
class TrainConfig:
    trainer: Literal["lm"] = option("lm", "which trainer reads the config: 'lm' (language models, this one) or 'gym'")
    # model
    model: str = option(DEFAULT_MODEL, "local HF causal-LM directory, or the built-in 'smollm2-135m'")
    dtype: Dtype = option("float32", "parameter dtype: float32 or bfloat16")
    lora_rank: int = option(0, "LoRA rank via peft; 0 trains all weights")
    freeze_embeddings: bool = option(True, "keep the (tied) token embeddings fixed: -0.34 GB for SmolLM2's 49k vocabulary")
    # data and rewards
    task: str = option("arithmetic", "'arithmetic' (built-in), 'reasoning_gym:<dataset>', or a .jsonl/.parquet file")
    task_size: int = option(1000, "rows generated for built-in and reasoning-gym tasks")
    task_params: dict[str, Any] = option(
        {}, "task generator settings: reasoning-gym dataset config fields, or {max_operand} for 'arithmetic'"
    )
    prompt_column: str = option("prompt", "column holding the prompt in a file task")
    rewards: list[dict[str, Any]] = option(
        [], "reward specs [{kind, name?, weight?, on_error?, params?}]; empty = the task's default rewards"
    )
    # rollout
    prompts_per_step: int = option(4, "prompts sampled per optimizer step")
    group_size: int = option(4, "completions per prompt (G)")
    max_new_tokens: int = option(24, "generation limit per completion")
    temperature: float = option(1.0, "sampling temperature")
    top_p: float = option(1.0, "nucleus sampling threshold")
    # advantages
    estimator: str = option("gdpo", "registered advantage estimator (polyreward estimators lists them)")
    estimator_params: dict[str, Any] = option({}, "keyword parameters for the estimator")
    dynamic_sampling: bool = option(False, "drop groups in which every reward is constant")
    controllers: list[dict[str, Any]] = option(
        [], "training-dynamics controllers [{kind, params?}]: samplers, B-STaR, schedules (docs/controllers.md)"
    )
    # loss and optimization
    loss_reduction: Reduction = option("token-mean", "token-mean, seq-mean-token-sum, seq-mean-token-mean, constant")
    clip_low: float = option(0.2, "lower PPO clip range")
    clip_high: float = option(0.28, "upper PPO clip range (DAPO clip-higher)")
    kl_coef: float = option(0.0, "weight of the k3 KL penalty to the initial policy (0 = no reference model)")
    epochs_per_batch: int = option(1, "optimizer passes over each rollout batch")
    micro_batch_size: int = option(4, "sequences per forward/backward (gradient accumulation; bounds activation memory)")
    learning_rate: float = option(1e-5, "AdamW learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    warmup_steps: int = option(0, "linear learning-rate warm-up steps")
    max_grad_norm: float = option(1.0, "gradient clipping norm (0 = off)")
    steps: int = option(40, "optimizer steps")
    seed: int = option(0, "seed for data order, sampling and initialization")
    threads: int = option(0, "torch CPU threads (0 = torch's default)")
    device: str = option("cpu", "torch device")
    # output
    output_dir: str = option("runs/default", "run directory (metrics, checkpoints, report)")
    save_every: int = option(20, "checkpoint every N steps (and at the end); 0 = only at the end")
    samples_to_log: int = option(4, "completions written to samples.jsonl per step")

    def __post_init__(self) -> None:
        positive = ["prompts_per_step", "group_size", "max_new_tokens", "epochs_per_batch", "micro_batch_size", "steps"]
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("learning_rate", "clip_low", "clip_high"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in (
            "kl_coef",
            "weight_decay",
            "max_grad_norm",
            "temperature",
            "warmup_steps",
            "save_every",
            "lora_rank",
            "threads",
            "samples_to_log",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p: must be in (0, 1], got {self.top_p}")
        from polyreward import advantages
        from polyreward.lm.controllers import build_controllers

        try:
            build_controllers(self.controllers)
        except ValueError as err:
            raise ConfigError(str(err)) from err

        if self.estimator not in advantages.names():
            raise ConfigError(f"estimator: {self.estimator!r} is not registered; choose one of {advantages.names()}")
        allowed = advantages.parameters(self.estimator)
        unknown = sorted(set(self.estimator_params) - set(allowed))
        if unknown:
            raise ConfigError(
                f"estimator_params: {unknown} not parameters of {self.estimator!r}; allowed: {sorted(allowed)}"
            )
