"""The testbed's training loop: sample -> RewardBatch -> ``advantages.compute`` -> clipped surrogate -> Adam.

One run of a few hundred updates takes seconds on one CPU thread, so a claim can be tested over
many seeds. The loop reads top to bottom (:func:`train`); an arm of an experiment is one
:class:`TrainConfig` (estimator, which rewards it sees, their weights and conditioning).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from polyreward import advantages
from polyreward.batch import RewardBatch
from polyreward.lm.loss import Reduction, clipped_surrogate, loss_normalizer, reduce_tokens
from polyreward.rewards import RewardSet
from polyreward.testbed.policy import GRUPolicy, Rollout, sample, sequence_logprobs
from polyreward.testbed.tasks import Completion, Task
from polyreward.testbed.vocab import PAD


@dataclasses.dataclass
class TrainConfig:
    """One arm of an experiment; every field but the reward handling is shared by all arms."""

    estimator: str = "grpo"
    """registered advantage estimator (``polyreward.advantages.names()``)"""
    estimator_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    """keyword parameters of the estimator"""
    rewards: tuple[str, ...] | None = None
    """reward columns the estimator sees, in order (default: all of the task's)"""
    weights: dict[str, float] = dataclasses.field(default_factory=dict)
    """per-reward weights (default 1)"""
    condition: dict[str, str] = dataclasses.field(default_factory=dict)
    """``{reward: gate}``: pay ``reward`` only where ``gate`` = 1 (GDPO's conditioning)"""
    steps: int = 300
    """optimizer updates"""
    prompts_per_step: int = 16
    """distinct prompts per update"""
    group_size: int = 8
    """samples per prompt (G)"""
    lr: float = 3e-3
    """Adam learning rate"""
    epochs: int = 1
    """optimizer passes over each batch (> 1 makes the clipping matter)"""
    clip: float = 0.2
    """PPO clip range (symmetric)"""
    reduction: Reduction = "token-mean"
    """loss reduction over tokens (``polyreward.lm.loss``)"""
    hidden: int = 64
    """GRU hidden size"""
    pretrain_steps: int = 0
    """supervised updates on the task's imperfect demonstrations before RL (0: from scratch)"""
    pretrain_lr: float = 1e-2
    """Adam learning rate of the pre-training"""
    eval_prompts: int = 256
    """prompts of the final evaluation (one sample each, temperature 1)"""
    seed: int = 0
    """seeds the initial weights, the prompts and the sampling"""


@dataclasses.dataclass
class RunResult:
    """``history``: one dict of metrics per update; ``final``: metrics of the final evaluation."""

    history: list[dict[str, float]]
    final: dict[str, float]
    policy: GRUPolicy


def train(task: Task, config: TrainConfig, callback: Callable[[int, dict], None] | None = None) -> RunResult:
    """Train a fresh policy on ``task`` with ``config``; deterministic for a given seed."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    policy = GRUPolicy(task.actions, hidden=config.hidden)
    if config.pretrain_steps:
        pretrain(policy, task, config, generator)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
    reward_set = RewardSet(task.reward_functions())
    history = []
    for step in range(config.steps):
        prompts = task.expand(task.sample_prompts(config.prompts_per_step, generator), config.group_size)
        rollout = sample(policy, task, prompts, generator)
        full = score(task, reward_set, rollout, config.group_size)
        batch = arm_batch(full, config)
        result = advantages.compute(config.estimator, batch, **config.estimator_params)
        losses = optimize(policy, optimizer, rollout, result, config)
        metrics = task.metrics(rollout.prompts, rollout.completions, {n: full[n] for n in full.names})
        history.append(metrics | losses)
        if callback is not None:
            callback(step, history[-1])
    return RunResult(history=history, final=evaluate(policy, task, reward_set, config), policy=policy)


def pretrain(policy: GRUPolicy, task: Task, config: TrainConfig, generator: torch.Generator) -> float:
    """Brief supervised pre-training on ``task.demonstration`` (cross-entropy on the policy tokens);
    returns the last loss. Stands in for the base model an RL run starts from."""
    rng = random.Random(config.seed)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.pretrain_lr)
    loss = torch.zeros(())
    for _ in range(config.pretrain_steps):
        prompts = task.expand(task.sample_prompts(config.prompts_per_step, generator), config.group_size)
        rollout = demonstrations(task, prompts, rng)
        logp = sequence_logprobs(policy, rollout)
        loss = -(logp * rollout.policy_mask).sum() / rollout.policy_mask.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def demonstrations(task: Task, prompts: list, rng: random.Random) -> Rollout:
    """A :class:`Rollout` of demonstrations (``old_logprobs`` 0), cut at ``task.max_new_tokens``."""
    n, length = len(prompts), task.max_new_tokens
    tokens = torch.full((n, task.prompt_length + length), PAD, dtype=torch.long)
    policy_mask = torch.zeros_like(tokens, dtype=torch.bool)
    completions = []
    for i, prompt in enumerate(prompts):
        demo = task.demonstration(prompt, rng)[:length]
        tokens[i, : task.prompt_length] = torch.tensor(prompt.tokens)
        for j, (token, from_env) in enumerate(demo):
            tokens[i, task.prompt_length + j] = token
            policy_mask[i, task.prompt_length + j] = not from_env
        kept = [(t, e) for t, e in demo if t != PAD]
        completions.append(Completion(tuple(t for t, _ in kept), tuple(e for _, e in kept), ended=True))
    zeros = torch.zeros(tokens.shape)
    return Rollout(tokens, policy_mask, zeros, torch.full_like(tokens, -1), list(prompts), completions)


def score(task: Task, reward_set: RewardSet, rollout: Rollout, group_size: int) -> RewardBatch:
    """Every task reward as a named ``[N, K]`` RewardBatch, with turn rewards and budgets where the task has them."""
    scored = reward_set.score(rollout.prompts, rollout.completions, group_size=group_size)
    batch = scored.batch
    turns = task.turn_rewards(rollout.prompts, rollout.completions)
    if turns is not None:
        width = max(1, max(len(t) for t in turns))
        batch = dataclasses.replace(batch, turn_rewards=[t + [None] * (width - len(t)) for t in turns])
    if all(p.budget is not None for p in rollout.prompts):
        batch = dataclasses.replace(batch, budgets=[float(p.budget) for p in rollout.prompts])
    return batch


def arm_batch(batch: RewardBatch, config: TrainConfig) -> RewardBatch:
    """The batch an arm's estimator sees: conditioning first (on the raw gates), then selection and weights."""
    for name, gate in config.condition.items():
        batch = batch.condition(name, on=gate)
    if config.rewards is not None:
        batch = batch.select(*config.rewards)
    return batch.with_weights(**config.weights) if config.weights else batch


def token_advantages(result: advantages.AdvantageResult, rollout: Rollout) -> dict[str, Tensor]:
    """Each advantage channel per token ``[N, P + L]``: a sample's value on all its tokens, or
    (turn level) turn t's value on the tokens of turn t."""
    out = {}
    for name, adv in result.channels.items():
        if result.level == "sample":
            out[name] = adv[:, None].expand_as(rollout.old_logprobs)
        elif result.level == "turn":
            index = rollout.token_turn.clamp(0, adv.shape[1] - 1)
            out[name] = torch.where(rollout.token_turn >= 0, adv.gather(1, index), torch.zeros(()))
        else:
            raise ValueError(f"testbed: {result.level}-level advantages do not apply to sequences")
    return out


def optimize(
    policy: GRUPolicy, optimizer: torch.optim.Optimizer, rollout: Rollout, result, config: TrainConfig
) -> dict[str, float]:
    """One clipped surrogate per advantage channel, weighted by ``result.channel_weights``.

    A channel other than the first covers only samples where its advantage is nonzero (HDPO
    aggregates its tool loss over those rollouts, as the language-model trainer does).
    """
    channels = token_advantages(result, rollout)
    first = next(iter(channels))
    masks = {
        name: rollout.policy_mask & ((adv != 0).any(-1, keepdim=True) if name != first else True)
        for name, adv in channels.items()
    }
    total = 0.0
    for _ in range(config.epochs):
        logp = sequence_logprobs(policy, rollout)
        loss = torch.zeros(())
        for name, adv in channels.items():
            per_token, _ = clipped_surrogate(logp, rollout.old_logprobs, adv, config.clip, config.clip)
            norm = loss_normalizer(masks[name], config.reduction)
            loss = loss + result.channel_weights[name] * reduce_tokens(per_token, masks[name], config.reduction, norm)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
    return {"loss/policy": total / config.epochs}


@torch.no_grad()
def evaluate(policy: GRUPolicy, task: Task, reward_set: RewardSet, config: TrainConfig) -> dict[str, float]:
    """Metrics of one sample per prompt on ``config.eval_prompts`` fresh prompts (a fixed generator
    per seed, so every arm of a seed is evaluated on the same prompts).

    Tasks whose ``expand`` varies the prompt within a group (budgets) get one sample per variant.
    """
    generator = torch.Generator().manual_seed(10_000 + config.seed)
    variants = len(getattr(task, "budgets", ())) or 1
    prompts = task.expand(task.sample_prompts(config.eval_prompts, generator), variants)
    rollout = sample(policy, task, prompts, generator)
    full = score(task, reward_set, rollout, variants)
    return task.metrics(rollout.prompts, rollout.completions, {n: full[n] for n in full.names})
