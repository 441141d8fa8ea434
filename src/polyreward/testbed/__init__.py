"""A fast testbed for multi-reward RL claims: synthetic digit-sum tasks and a tiny GRU policy.

``train(SumTask(), TrainConfig(estimator="gdpo", seed=0))`` trains a policy from scratch in a few
seconds on one CPU thread; ``benchmarks/evidence_*.py`` run each claim over many seeds with it.
"""

from polyreward.testbed.policy import GRUPolicy, Rollout, sample, sequence_logprobs
from polyreward.testbed.tasks import (
    TASKS,
    BudgetTask,
    Completion,
    MultiTurnTask,
    Prompt,
    SumTask,
    Task,
    ToolTask,
)
from polyreward.testbed.train import RunResult, TrainConfig, evaluate, train
from polyreward.testbed.vocab import render

__all__ = [
    "TASKS",
    "BudgetTask",
    "Completion",
    "GRUPolicy",
    "MultiTurnTask",
    "Prompt",
    "Rollout",
    "RunResult",
    "SumTask",
    "Task",
    "ToolTask",
    "TrainConfig",
    "evaluate",
    "render",
    "sample",
    "sequence_logprobs",
    "train",
]
