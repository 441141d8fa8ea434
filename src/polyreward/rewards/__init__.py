"""Reward functions. Each maps a batch of samples to one value per sample."""

from polyreward.rewards.budget import budget_ceiling, hbpo_reward
from polyreward.rewards.conditioning import condition_reward

__all__ = ["budget_ceiling", "condition_reward", "hbpo_reward"]
