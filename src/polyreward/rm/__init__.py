"""Reward models: training preference, multi-objective and (planned) personalized reward models.

- :mod:`polyreward.rm.data`: preference pairs from local files (validated, errors naming file and row) and a
  generator of pairs with known truth and a controlled fraction of flipped labels.
- :mod:`polyreward.rm.losses`: pure tensor functions (Bradley-Terry, label smoothing, preference strength,
  adaptive margin, SimCSE, directional combination, VPL's ELBO terms).
- :mod:`polyreward.rm.model`: :class:`RewardModel` (backbone + K heads); saved models load as reward
  components, one per head.
- :mod:`polyreward.rm.train`: :class:`RMConfig` and the training loop (``polyreward rm train``).

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
    validate_rows,
)
from polyreward.rm.model import RewardModel, directional_reward, reward_components, reward_functions
from polyreward.rm.train import evaluate_pairs
from polyreward.rm.train import train as train_reward_model

__all__ = [
    "GeneratedPairs",
    "PairSet",
    "PreferenceDataError",
    "PreferencePair",
    "RMConfig",
    "RewardModel",
    "directional_reward",
    "evaluate_pairs",
    "generate_pairs",
    "load_pairs",
    "reward_components",
    "reward_functions",
    "sentiment_pairs",
    "train_reward_model",
    "validate_rows",
]
