"""Reward components, reward sets and built-in reward functions.

A reward function is TRL-style: ``fn(prompts, completions, **columns) -> list[float | None]``.
:class:`RewardSet` scores K of them into a :class:`~polyreward.RewardBatch`. The built-in factories
(``answer_reward``, ``format_reward``, ``toolrl_rewards``, ``judge_reward`` ...) return such
functions; the pure scoring functions (``toolrl_correctness``, ``temporal_iou``, ``bmas`` ...)
score one sample. Heavy dependencies (math-verify, reasoning-gym, scipy, POT, sentence-transformers,
transformers) are imported only when a function needs them.
"""

from polyreward.batch import condition_reward
from polyreward.rewards._columns import RewardInputError
from polyreward.rewards.answers import (
    answer_reward,
    exact_match,
    extract_answer,
    extract_choice,
    math_equivalent,
    numeric_match,
    parse_number,
)
from polyreward.rewards.budget import budget_ceiling, hbpo_reward
from polyreward.rewards.check import RewardCheck, check_reward
from polyreward.rewards.code import GeneratedRewardError, code_test_reward, extract_program, generated_reward
from polyreward.rewards.component import RewardComponent, RewardError, RewardFailure
from polyreward.rewards.format import (
    format_reward,
    meta_format_reward,
    meta_reasoning_rewards,
    parallel_format_reward,
    parallel_r1_reward,
    parallel_r1_score,
    tag_format_ok,
)
from polyreward.rewards.geometry import box_iou, box_iou_reward, temporal_iou, temporal_iou_reward, temporal_r1_reward
from polyreward.rewards.judges import judge_reward
from polyreward.rewards.length import (
    hbpo_length_reward,
    overlong_penalty,
    overlong_reward,
    target_length_reward,
    word_budget_reward,
)
from polyreward.rewards.progress import (
    fuse_progress,
    hop_label,
    progress_estimator_loss,
    progress_from_hops,
    spa_step_rewards,
)
from polyreward.rewards.ray_backend import LazyReward, RayRewardPool, RewardActorDied
from polyreward.rewards.reasoning_gym import reasoning_gym_reward, reasoning_gym_task
from polyreward.rewards.reward_models import reward_model_reward
from polyreward.rewards.reward_set import RewardSet, ScoredRewards
from polyreward.rewards.schedules import Constant, Linear, Piecewise, Step, toolrl_dynamic
from polyreward.rewards.selection import balance_score, select_by_reward_variance
from polyreward.rewards.similarity import (
    bmas,
    bmas_reward,
    clip_goal_baseline_reward,
    goal_baseline_reward,
    ot_alignment,
    ot_alignment_reward,
    sentence_similarity_reward,
)
from polyreward.rewards.tables import table2latex_structure_reward, table_structure_reward, teds_structure
from polyreward.rewards.tools import (
    answer_f1,
    assign_hard,
    assign_ot,
    matchtir_turn_reward,
    matchtir_turn_rewards,
    tool_call_similarity,
    toolrl_correctness,
    toolrl_format,
    toolrl_rewards,
)

__all__ = [
    "Constant",
    "GeneratedRewardError",
    "LazyReward",
    "Linear",
    "Piecewise",
    "RayRewardPool",
    "RewardActorDied",
    "RewardCheck",
    "RewardComponent",
    "RewardError",
    "RewardFailure",
    "RewardInputError",
    "RewardSet",
    "ScoredRewards",
    "Step",
    "answer_f1",
    "answer_reward",
    "assign_hard",
    "assign_ot",
    "balance_score",
    "bmas",
    "bmas_reward",
    "box_iou",
    "box_iou_reward",
    "budget_ceiling",
    "check_reward",
    "clip_goal_baseline_reward",
    "code_test_reward",
    "condition_reward",
    "exact_match",
    "extract_answer",
    "extract_choice",
    "extract_program",
    "format_reward",
    "fuse_progress",
    "generated_reward",
    "goal_baseline_reward",
    "hbpo_length_reward",
    "hbpo_reward",
    "hop_label",
    "judge_reward",
    "matchtir_turn_reward",
    "matchtir_turn_rewards",
    "math_equivalent",
    "meta_format_reward",
    "meta_reasoning_rewards",
    "numeric_match",
    "ot_alignment",
    "ot_alignment_reward",
    "overlong_penalty",
    "overlong_reward",
    "parallel_format_reward",
    "parallel_r1_reward",
    "parallel_r1_score",
    "parse_number",
    "progress_estimator_loss",
    "progress_from_hops",
    "reasoning_gym_reward",
    "reasoning_gym_task",
    "reward_model_reward",
    "select_by_reward_variance",
    "sentence_similarity_reward",
    "spa_step_rewards",
    "table2latex_structure_reward",
    "table_structure_reward",
    "tag_format_ok",
    "target_length_reward",
    "teds_structure",
    "temporal_iou",
    "temporal_iou_reward",
    "temporal_r1_reward",
    "tool_call_similarity",
    "toolrl_correctness",
    "toolrl_dynamic",
    "toolrl_format",
    "toolrl_rewards",
    "word_budget_reward",
]
