"""Advantage estimators: ``compute(name, batch, **params) -> AdvantageResult``.

Every estimator is registered by name and called the same way; ``names()`` lists them. The math
lives in pure tensor functions (``grpo_advantage``, ``gdpo_advantage``, ...) exported here too.
"""

from polyreward.advantages.budget import hbpo_advantage
from polyreward.advantages.conditional import conditional_advantage
from polyreward.advantages.gae import gae, multi_critic_advantage
from polyreward.advantages.gdpo import gdpo_advantage
from polyreward.advantages.group import (
    best_in_group,
    grpo_advantage,
    reinforce_pp_advantage,
    rloo_advantage,
    unit_direction,
)
from polyreward.advantages.registry import AdvantageResult, compute, get, names, parameters, register
from polyreward.advantages.turns import discounted_turn_returns, dual_level_advantage
from polyreward.batch import condition_reward
from polyreward.groups import group_mean_std, group_normalize

__all__ = [
    "AdvantageResult",
    "best_in_group",
    "compute",
    "condition_reward",
    "conditional_advantage",
    "discounted_turn_returns",
    "dual_level_advantage",
    "gae",
    "gdpo_advantage",
    "get",
    "group_mean_std",
    "group_normalize",
    "grpo_advantage",
    "hbpo_advantage",
    "multi_critic_advantage",
    "names",
    "parameters",
    "register",
    "reinforce_pp_advantage",
    "rloo_advantage",
    "unit_direction",
]
