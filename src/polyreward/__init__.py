"""polyreward: reinforcement learning with many named reward signals.

import polyreward as pr
batch = pr.RewardBatch(rewards=[[1, 1], [1, 0], [0, 1], [0, 0]], names=["correct", "format"])
print(pr.advantages.compute("gdpo", batch).advantages)
"""

from polyreward import advantages, rewards, shaping
from polyreward.batch import RewardBatch
from polyreward.diagnostics import Diagnostics, diagnose

__all__ = ["Diagnostics", "RewardBatch", "advantages", "diagnose", "rewards", "shaping"]
__version__ = "0.1.0"
