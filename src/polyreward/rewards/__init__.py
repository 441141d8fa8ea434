"""Reward components, reward sets and built-in reward functions.

A reward function is TRL-style: ``fn(prompts, completions, **columns) -> list[float | None]``.
:class:`RewardSet` scores K of them into a :class:`~polyreward.RewardBatch`.
"""

from polyreward.batch import condition_reward
from polyreward.rewards.budget import budget_ceiling, hbpo_reward
from polyreward.rewards.check import RewardCheck, check_reward
from polyreward.rewards.component import RewardComponent, RewardError, RewardFailure
from polyreward.rewards.reward_set import RewardSet, ScoredRewards
from polyreward.rewards.schedules import Constant, Linear, Step

__all__ = [
    "Constant",
    "Linear",
    "RewardCheck",
    "RewardComponent",
    "RewardError",
    "RewardFailure",
    "RewardSet",
    "ScoredRewards",
    "Step",
    "budget_ceiling",
    "check_reward",
    "condition_reward",
    "hbpo_reward",
]
