"""PPO family on vector-reward environments (Gymnasium, MO-Gymnasium, MiniGrid).

    from polyreward.gym import GymConfig, PPO, evaluate
    ppo = PPO("deep-sea-treasure-v0", GymConfig(output_dir="runs/dst")).learn(40_000)
    print(evaluate(ppo, episodes=10).mean)        # {'treasure': ..., 'time': ...}

Rewards are named components end to end: ``RewardVecEnv.step`` yields ``rewards[E, K]``, the trainer
keeps one value head per component (``critic="multi"``) and logs ``reward/<name>/episodic_return``.
"""

from polyreward.gym.ads import ADSScheduler, DiscountSchedule
from polyreward.gym.barfi import RewardBlend, blend_rewards
from polyreward.gym.config import GymConfig
from polyreward.gym.curriculum import (
    LearningProgressSampler,
    StagedSampler,
    TaskCurriculum,
    TaskSampler,
    TaskSwitchEnv,
    learning_progress_probs,
)
from polyreward.gym.envs import (
    ComponentWrapper,
    EnvError,
    EpisodicCount,
    GlobalCount,
    RewardVecEnv,
    Step,
    make_env,
    make_vec_env,
    reward_names,
)
from polyreward.gym.evaluate import (
    Evaluation,
    SuccessEvaluation,
    SweepResult,
    evaluate,
    evaluate_success,
    hypervolume_2d,
    pareto_front,
    success_rate,
    weight_sweep,
)
from polyreward.gym.exploration import (
    EllipticalEpisodicBonus,
    ExplorationBonus,
    InverseDynamics,
    RNDBonus,
    RunningStd,
    noveld,
)
from polyreward.gym.meta_world import make_metaworld, task_id_from_obs
from polyreward.gym.networks import ActorCritic, MoEMLP, MoESpec
from polyreward.gym.ppo import PPO, Rollout
from polyreward.gym.pvn import PVNAuxiliary

__all__ = [
    "PPO",
    "ADSScheduler",
    "ActorCritic",
    "ComponentWrapper",
    "DiscountSchedule",
    "EllipticalEpisodicBonus",
    "EnvError",
    "EpisodicCount",
    "Evaluation",
    "ExplorationBonus",
    "GlobalCount",
    "GymConfig",
    "InverseDynamics",
    "LearningProgressSampler",
    "MoEMLP",
    "MoESpec",
    "PVNAuxiliary",
    "RNDBonus",
    "RewardBlend",
    "RewardVecEnv",
    "Rollout",
    "RunningStd",
    "StagedSampler",
    "Step",
    "SuccessEvaluation",
    "SweepResult",
    "TaskCurriculum",
    "TaskSampler",
    "TaskSwitchEnv",
    "blend_rewards",
    "evaluate",
    "evaluate_success",
    "hypervolume_2d",
    "learning_progress_probs",
    "make_env",
    "make_metaworld",
    "make_vec_env",
    "noveld",
    "pareto_front",
    "reward_names",
    "success_rate",
    "task_id_from_obs",
    "weight_sweep",
]
