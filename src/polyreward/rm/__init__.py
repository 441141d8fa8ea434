"""Reward models: training preference, multi-objective and (planned) personalized reward models.

- :mod:`polyreward.rm.data`: preference pairs from local files (validated, errors naming file and row) and a
  generator of pairs with known truth and a controlled fraction of flipped labels.
- :mod:`polyreward.rm.losses`: pure tensor functions (Bradley-Terry, label smoothing, preference strength,
  adaptive margin, SimCSE, directional combination, VPL's ELBO terms).
- :mod:`polyreward.rm.model`: :class:`RewardModel` (backbone + K heads); saved models load as reward
  components, one per head.
- :mod:`polyreward.rm.pairwise`: a generative A/B judge trained on both orderings (Pairwise-RL); it is served by
  ``judge_reward(mode="pairwise")``.
- :mod:`polyreward.rm.verdict_task`: the GRPO verdict task (``task: verdict:<pairs>``), UnifiedReward-Think / BR-RM.
- :mod:`polyreward.rm.vpl`: VPL, a user-conditioned reward model (``kind: vpl``).
- :mod:`polyreward.rm.train`: :class:`RMConfig` and the training loop (``polyreward rm train``, ``kind`` bt /
  pairwise / vpl).

See ``docs/reward-models.md``.
"""

from polyreward.rm.config import RMConfig
from polyreward.rm.data import (
    GeneratedPairs,
    PairSet,
    PreferenceDataError,
    PreferencePair,
    generate_pairs,
    load_pairs,
    sentiment_pairs,
    user_pairs,
    validate_rows,
)
from polyreward.rm.model import RewardModel, directional_reward, named_reward, reward_components, reward_functions
from polyreward.rm.pairwise import PairwiseJudge, evaluate_judge, fit_judge
from polyreward.rm.train import evaluate_pairs
from polyreward.rm.train import train as train_reward_model
from polyreward.rm.verdict_task import parse_verdict, verdict_correct, verdict_format, verdict_rows, verdict_task
from polyreward.rm.vpl import VPLRewardModel, fit_vpl, user_accuracy, vpl_reward_function

__all__ = [
    "GeneratedPairs",
    "PairSet",
    "PairwiseJudge",
    "PreferenceDataError",
    "PreferencePair",
    "RMConfig",
    "RewardModel",
    "VPLRewardModel",
    "directional_reward",
    "evaluate_judge",
    "evaluate_pairs",
    "fit_judge",
    "fit_vpl",
    "generate_pairs",
    "load_pairs",
    "named_reward",
    "parse_verdict",
    "reward_components",
    "reward_functions",
    "sentiment_pairs",
    "train_reward_model",
    "user_accuracy",
    "user_pairs",
    "validate_rows",
    "verdict_correct",
    "verdict_format",
    "verdict_rows",
    "verdict_task",
    "vpl_reward_function",
]
