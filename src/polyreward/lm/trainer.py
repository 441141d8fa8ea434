"""GRPO-family trainer for Hugging Face causal LMs.

One step: prompts -> grouped sampling -> reward set -> RewardBatch -> advantage estimator ->
clipped surrogate per channel (+ KL) -> optimizer -> metrics. The trainer owns the order, the
devices and the optimizer; every stage is a function of the previous stage's output.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polyreward import advantages
from polyreward.batch import RewardBatch
from polyreward.checkpoint import (
    check_resumed_config,
    latest_checkpoint,
    load_state,
    restore_training_state,
    save_checkpoint,
)
from polyreward.config import to_mapping
from polyreward.diagnostics import diagnose
from polyreward.lm.config import TrainConfig
from polyreward.lm.controllers import Controllers, LossMix, SupervisedTerm, build_controllers
from polyreward.lm.data import PromptSource
from polyreward.lm.forward import completion_logits
from polyreward.lm.loss import (
    clipped_surrogate,
    kl_k3,
    loss_normalizer,
    reduce_tokens,
    sft_token_loss,
    token_entropy,
    token_logprobs,
)
from polyreward.lm.multiturn import ToolEnvironment, TurnRollout, sample_with_tools, turn_advantages_to_tokens
from polyreward.lm.rollout import Rollout, demonstration_rollout, encode_prompts, sample_group
from polyreward.rewards import RewardSet
from polyreward.runlog import RunLog, open_run


@dataclasses.dataclass
class TrainState:
    """What a checkpoint needs besides tensors: the next step and the data position."""

    step: int = 0
    position: int = 0


class Trainer:
    """``Trainer(model, tokenizer, rewards, data, config).train()``.

    ``rewards``: a :class:`~polyreward.rewards.RewardSet` (or a list of reward functions);
    ``data``: a :class:`~polyreward.lm.data.PromptSource` (or a list of row dicts with ``prompt``).
    """

    def __init__(
        self,
        model,
        tokenizer,
        rewards: RewardSet | list,
        data: PromptSource | list,
        config: TrainConfig,
        tools: ToolEnvironment | None = None,
        turn_reward: Callable[..., list[list[float]]] | None = None,
    ):
        self.config = config
        self.tools, self.turn_reward = tools, turn_reward
        self.model, self.tokenizer = model, tokenizer
        self.rewards = rewards if isinstance(rewards, RewardSet) else RewardSet(rewards)
        self.data = data if isinstance(data, PromptSource) else PromptSource(data, seed=config.seed)
        self.run_dir = Path(config.output_dir)
        self.state = TrainState()
        self.generator = torch.Generator().manual_seed(config.seed)
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay, fused=True)
        warmup = max(config.warmup_steps, 1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / warmup))
        self.reference = _frozen_copy(model) if config.kl_coef > 0 else None
        self.device = next(model.parameters()).device
        self._last_samples: list[dict[str, Any]] = []
        self.controllers = Controllers(build_controllers(config.controllers))
        self.controllers.bind(self.rewards, self.data, config.seed)

    # ------------------------------------------------------------------ the loop
    def train(self, resume: bool = False, progress: bool = True) -> Path:
        """Run to ``config.steps``; with ``resume`` continue from the run directory's last checkpoint."""
        cfg = self.config
        if resume:
            self._resume()
        log = open_run(self.run_dir, cfg, resuming=resume)
        bar = _progress(cfg.steps, self.state.step, progress)
        try:
            while self.state.step < cfg.steps:
                metrics = self.step()
                log.log(self.state.step, metrics)
                log.log_samples(self.state.step, self._last_samples)
                self.state.step += 1
                if self.state.step == cfg.steps or (cfg.save_every and self.state.step % cfg.save_every == 0):
                    self.save()
                bar.update(1)
                bar.set_postfix(_postfix(metrics, self.rewards.names))
        finally:
            bar.close()
            log.close()
        return self.run_dir

    def step(self) -> dict[str, float]:
        """One optimizer step on a fresh batch of rollouts; returns its metrics."""
        cfg, start = self.config, time.perf_counter()
        plan, control_metrics = self.controllers.plan(
            self.state.step, self.state.position, cfg.prompts_per_step, self._probe
        )
        indices = plan.indices if plan.indices is not None else self.data.indices(plan.position, plan.size)
        rows = plan.rows if plan.rows is not None else [self.data.rows[i] for i in indices]
        self.state.position += cfg.prompts_per_step
        temperature = cfg.temperature if plan.temperature is None else plan.temperature
        rollout = self.rollout([row[self.data.prompt_column] for row in rows], cfg.group_size, temperature)
        sampled = time.perf_counter()
        batch, reward_metrics = self.score(rows, rollout)
        control_metrics.update(self.controllers.observe(self.state.step, batch, indices, rows, rollout.texts))
        self._last_samples = _samples(rows, rollout, batch, cfg.group_size, cfg.samples_to_log)
        scored = time.perf_counter()
        learn_metrics = self.learn(batch, rollout)
        done = time.perf_counter()
        timing = {
            "time/sample_s": sampled - start,
            "time/reward_s": scored - sampled,
            "time/optimize_s": done - scored,
            "time/step_s": done - start,
            "time/samples_per_s": rollout.num_samples / (done - start),
        }
        return {**reward_metrics, **control_metrics, **learn_metrics, **timing}

    def learn(self, batch: RewardBatch, rollout: Rollout) -> dict[str, float]:
        """Advantages of a scored rollout, then one optimizer update on them; returns their metrics."""
        cfg = self.config
        if cfg.dynamic_sampling:
            batch, rollout = _drop_flat_groups(batch, rollout)
        result = advantages.compute(cfg.estimator, batch, **cfg.estimator_params)
        result = self.controllers.advantages(batch, result)
        loss_metrics = self._optimize(rollout, result)
        return {
            **_advantage_metrics(batch, result, cfg.estimator),
            **loss_metrics,
            "lr": self.scheduler.get_last_lr()[0],
            "completion_tokens/mean": float(rollout.completion_mask.sum(-1).float().mean()),
        }

    def supervised_step(self, demos: Rollout) -> dict[str, float]:
        """One optimizer step on the token NLL of ``demos`` (demonstrations, or kept samples in
        rejection-sampling fine-tuning); row ``i`` answers prompt ``i // demos.group_size``."""
        loss, entropy = self._supervised_backward(demos)
        grad_norm = self._apply_gradients()
        return {"loss/sft": loss, "loss/sft_entropy": entropy, "grad_norm": grad_norm, "lr": self.scheduler.get_last_lr()[0]}

    # ------------------------------------------------------------------ stages
    def _probe(self, rows: list[dict], samples: int, temperature: float) -> tuple[RewardBatch, list[str]]:
        """Sample and score rows outside the training batch (controllers' probes); no update."""
        rollout = self.rollout([row[self.data.prompt_column] for row in rows], samples, temperature)
        return self.score(rows, rollout)[0], rollout.texts

    def rollout(self, prompts: list, group_size: int, temperature: float) -> Rollout:
        """``group_size`` completions per prompt, single-turn or with tools (sampling in eval mode)."""
        cfg = self.config
        self.model.eval()
        try:
            if self.tools is not None:
                return sample_with_tools(
                    self.model,
                    self.tokenizer,
                    prompts,
                    group_size,
                    self.tools,
                    cfg.max_new_tokens,
                    temperature,
                    cfg.top_p,
                    self.generator,
                )
            ids = encode_prompts(self.tokenizer, prompts)
            return sample_group(
                self.model,
                self.tokenizer,
                ids,
                group_size,
                cfg.max_new_tokens,
                temperature,
                cfg.top_p,
                self.generator,
            )
        finally:
            self.model.train()

    def score(self, rows: list[dict], rollout: Rollout) -> tuple[RewardBatch, dict[str, float]]:
        """Rewards for every completion; each row is repeated G times so columns align (the prompt
        source's columns, plus any other key the rows carry)."""
        g = rollout.group_size
        repeated = [row for row in rows for _ in range(g)]
        names = list(dict.fromkeys([*self.data.columns, *(k for row in rows for k in row)]))
        columns = {c: [row.get(c) for row in repeated] for c in names if c != self.data.prompt_column}
        columns["completion_ids"] = [
            ids[m].tolist() for ids, m in zip(rollout.completion_ids, rollout.completion_mask, strict=True)
        ]
        if isinstance(rollout, TurnRollout):
            columns.update(turns=rollout.turns, tool_calls=rollout.tool_calls.tolist())
        prompts = [row[self.data.prompt_column] for row in repeated]
        scored = self.rewards.score(prompts, rollout.texts, group_size=g, step=self.state.step, **columns)
        turn_rewards = None
        if self.turn_reward is not None:
            per_turn = self.turn_reward(prompts, rollout.texts, **columns)
            width = max(len(t) for t in per_turn)
            turn_rewards = [list(t) + [None] * (width - len(t)) for t in per_turn]
        batch = dataclasses.replace(scored.batch, response_mask=rollout.completion_mask, turn_rewards=turn_rewards)
        return batch, scored.metrics

    def _optimize(self, rollout: Rollout, result: advantages.AdvantageResult) -> dict[str, float]:
        """Clipped surrogate per advantage channel (+ KL), accumulated over micro-batches."""
        cfg = self.config
        mask = rollout.completion_mask.to(self.device)
        channels = {name: adv.to(self.device) for name, adv in _token_channels(result, rollout).items()}
        channel_masks = {
            name: mask & _sample_mask(result, name, adv).to(self.device)[:, None] for name, adv in channels.items()
        }
        norms = {name: loss_normalizer(m, cfg.loss_reduction, cfg.max_new_tokens) for name, m in channel_masks.items()}
        kl_norm = loss_normalizer(mask, cfg.loss_reduction, cfg.max_new_tokens)
        old = self._logprobs_no_grad(rollout) if cfg.epochs_per_batch > 1 else None
        ref = self._logprobs_no_grad(rollout, self.reference) if self.reference is not None else None
        totals = {"loss/policy": 0.0, "loss/kl": 0.0, "loss/clip_fraction": 0.0, "loss/entropy": 0.0}
        supervised, mixed = self.controllers.supervised(self.state.step), {}
        for epoch in range(cfg.epochs_per_batch):
            entropy_before = totals["loss/entropy"]
            for rows in torch.arange(rollout.num_samples).split(cfg.micro_batch_size):
                logits = self._completion_logits(rollout, rows)
                logp = token_logprobs(logits, rollout.completion_ids[rows].to(self.device))
                old_logp = logp.detach() if old is None else old[rows]
                loss = torch.zeros((), device=self.device)
                for name, adv in channels.items():
                    per_token, clipped = clipped_surrogate(logp, old_logp, adv[rows], cfg.clip_low, cfg.clip_high)
                    share = reduce_tokens(per_token, channel_masks[name][rows], cfg.loss_reduction, norms[name])
                    loss = loss + result.channel_weights[name] * share
                    if name == next(iter(channels)):
                        totals["loss/clip_fraction"] += float(
                            reduce_tokens(clipped, mask[rows], "token-mean", float(mask.sum()))
                        )
                if ref is not None:
                    kl = reduce_tokens(kl_k3(logp, ref[rows]), mask[rows], cfg.loss_reduction, kl_norm)
                    loss = loss + cfg.kl_coef * kl
                    totals["loss/kl"] += float(kl.detach())
                loss.backward()
                totals["loss/policy"] += float(loss.detach())
                with torch.no_grad():
                    totals["loss/entropy"] += float(
                        reduce_tokens(token_entropy(logits), mask[rows], "token-mean", float(mask.sum()))
                    )
            if supervised is not None:  # a controller mixes in an imitation loss (AMFT)
                mixed = self._mix_supervised(*supervised, epoch, totals["loss/entropy"] - entropy_before)
            grad_norm = self._apply_gradients()
        return {k: v / cfg.epochs_per_batch for k, v in totals.items()} | {"loss/grad_norm": grad_norm} | mixed

    def _mix_supervised(self, controller, term: SupervisedTerm, epoch: int, rl_entropy: float) -> dict[str, float]:
        """Replace the accumulated RL gradient by ``w_RL·g_RL + w_SFT·g_SFT`` with the weights the
        controller chooses from both gradients (and a validation NLL gradient when the term has one)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        rl_grad = _flat_grads(params)
        self.optimizer.zero_grad(set_to_none=True)
        demos = demonstration_rollout(self.tokenizer, term.prompts, term.targets)
        sft_loss, sft_entropy = self._supervised_backward(demos)
        sft_grad = _flat_grads(params)
        self.optimizer.zero_grad(set_to_none=True)
        val_grad, metrics = None, {"loss/sft": sft_loss, "loss/sft_entropy": sft_entropy}
        if term.validation is not None:
            metrics["loss/sft_validation"], _ = self._supervised_backward(
                demonstration_rollout(self.tokenizer, *term.validation)
            )
            val_grad = _flat_grads(params)
            self.optimizer.zero_grad(set_to_none=True)
        inputs = LossMix(rl_grad, sft_grad, val_grad, self.scheduler.get_last_lr()[0], rl_entropy, sft_entropy, epoch)
        rl_weight, sft_weight, controller_metrics = controller.mix(self.state.step, inputs)
        _set_flat_grads(params, rl_weight * rl_grad + sft_weight * sft_grad)
        return metrics | controller_metrics

    def _supervised_backward(self, demos: Rollout) -> tuple[float, float]:
        """Backward of the demonstrations' token NLL (trainer's loss reduction) over micro-batches;
        returns ``(loss, token-mean entropy)``."""
        cfg = self.config
        mask = demos.completion_mask.to(self.device)
        norm = loss_normalizer(mask, cfg.loss_reduction, cfg.max_new_tokens)
        loss_total, entropy = 0.0, 0.0
        for rows in torch.arange(demos.num_samples).split(cfg.micro_batch_size):
            logits = self._completion_logits(demos, rows)
            logp = token_logprobs(logits, demos.completion_ids[rows].to(self.device))
            loss = sft_token_loss(logp, mask[rows], cfg.loss_reduction, norm)
            loss.backward()
            loss_total += float(loss.detach())
            with torch.no_grad():
                entropy += float(reduce_tokens(token_entropy(logits), mask[rows], "token-mean", float(mask.sum())))
        return loss_total, entropy

    def _apply_gradients(self) -> float:
        params = [p for p in self.model.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm or float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def _completion_logits(self, rollout: Rollout, rows: Tensor, model=None) -> Tensor:
        """Logits ``[B, Lc, V]`` predicting the completion tokens of ``rows``; each prompt runs once."""
        groups, prompt_of_row = torch.unique_consecutive(rows // rollout.group_size, return_inverse=True)
        first_rows = groups * rollout.group_size  # rows are grouped: row i answers prompt i // G
        return completion_logits(
            model or self.model,
            rollout.prompt_ids[first_rows].to(self.device),
            rollout.prompt_mask[first_rows].to(self.device),
            rollout.completion_ids[rows].to(self.device),
            rollout.completion_attention[rows].to(self.device),
            prompt_of_row.to(self.device),
        )

    @torch.no_grad()
    def _logprobs_no_grad(self, rollout: Rollout, model=None) -> Tensor:
        parts = [
            token_logprobs(self._completion_logits(rollout, rows, model), rollout.completion_ids[rows].to(self.device))
            for rows in torch.arange(rollout.num_samples).split(self.config.micro_batch_size)
        ]
        return torch.cat(parts)

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> Path:
        state = {
            **dataclasses.asdict(self.state),
            "config": to_mapping(self.config),
            "controllers": self.controllers.state_dict(),
        }
        return save_checkpoint(
            self.run_dir, self.state.step, state, self.model, self.tokenizer, self.optimizer, self.scheduler, self.generator
        )

    def _resume(self) -> None:
        checkpoint = latest_checkpoint(self.run_dir)
        saved = load_state(checkpoint)
        check_resumed_config(checkpoint, to_mapping(self.config), saved["config"])
        restore_training_state(checkpoint, self.model, self.optimizer, self.scheduler, self.generator)
        self.state = TrainState(step=saved["step"], position=saved["position"])
        self.controllers.load_state_dict(saved.get("controllers", []))
        RunLog(self.run_dir, tensorboard=False).truncate_after(self.state.step - 1)


def _token_channels(result: advantages.AdvantageResult, rollout: Rollout) -> dict[str, Tensor]:
    """Advantage channels as ``[N]`` (one per completion) or ``[N, Lc]`` (per turn, spread over its tokens)."""
    if result.level == "sample":
        return result.channels
    if result.level == "turn" and isinstance(rollout, TurnRollout):
        return {name: turn_advantages_to_tokens(adv, rollout.token_turn) for name, adv in result.channels.items()}
    raise ValueError(
        f"{result.level}-level advantages need a matching rollout (turn-level: a ToolEnvironment); "
        "the language-model trainer cannot use step-level estimators"
    )


def _flat_grads(params: list[Tensor]) -> Tensor:
    """The parameters' gradients as one float32 vector ``[P]`` (a missing gradient counts as 0)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params])


def _set_flat_grads(params: list[Tensor], vector: Tensor) -> None:
    offset = 0
    for p in params:
        p.grad = vector[offset : offset + p.numel()].reshape(p.shape).to(p.dtype).clone()
        offset += p.numel()


def _frozen_copy(model):
    reference = copy.deepcopy(model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    return reference


def _sample_mask(result: advantages.AdvantageResult, channel: str, adv: Tensor) -> Tensor:
    """Samples a channel's loss covers: all for the primary channel; HDPO's conditional channel only
    where its advantage is nonzero (the paper aggregates L_tool over those rollouts)."""
    if channel == next(iter(result.channels)):
        return torch.ones(adv.shape[0], dtype=torch.bool)
    return (adv != 0).cpu() if adv.dim() == 1 else (adv != 0).any(-1).cpu()


def _drop_flat_groups(batch: RewardBatch, rollout: Rollout) -> tuple[RewardBatch, Rollout]:
    """Keep the groups where at least one reward varies (component-aware dynamic sampling)."""
    from polyreward.groups import group_mean_std

    _, std, count = group_mean_std(batch.rewards, batch.group_index, batch.num_groups)
    informative = ((std > 0) & (count > 1)).any(-1)
    keep = torch.nonzero(informative[batch.group_index]).squeeze(-1)
    if keep.numel() == 0:
        return batch, rollout  # nothing informative: train on the batch as it is rather than skip the step
    return batch.take(keep), rollout.subset(keep)


def _advantage_metrics(batch: RewardBatch, result: advantages.AdvantageResult, estimator: str) -> dict[str, float]:
    diag = diagnose(batch, result)
    adv = result.advantages
    out = {
        "adv/mean": float(adv.mean()),
        "adv/std": float(adv.std()) if adv.numel() > 1 else 0.0,
        "adv/abs_mean": float(adv.abs().mean()),
        "batch/samples": float(batch.num_samples),
    }
    out.update({k.replace("diag/given/", f"diag/{estimator}/"): v for k, v in diag.as_dict().items()})
    return out


def _samples(rows, rollout: Rollout, batch: RewardBatch, group_size: int, count: int) -> list[dict[str, Any]]:
    out = []
    for i in range(min(count, rollout.num_samples)):
        rewards = {name: (None if v != v else v) for name, v in zip(batch.names, batch.rewards[i].tolist(), strict=True)}
        out.append({"prompt": str(rows[i // group_size].get("prompt")), "completion": rollout.texts[i], "rewards": rewards})
    return out


def _postfix(metrics: dict[str, float], names: list[str]) -> dict[str, str]:
    return {name: f"{metrics.get(f'reward/{name}/mean', float('nan')):.2f}" for name in names[:4]}


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=not enabled, dynamic_ncols=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
