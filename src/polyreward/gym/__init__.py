"""PPO family on vector-reward environments (Gymnasium, MO-Gymnasium, MiniGrid).

    from polyreward.gym import GymConfig, PPO, evaluate
    ppo = PPO("deep-sea-treasure-v0", GymConfig(output_dir="runs/dst")).learn(40_000)
    print(evaluate(ppo, episodes=10).mean)        # {'treasure': ..., 'time': ...}

Rewards are named components end to end: ``RewardVecEnv.step`` yields ``rewards[E, K]``, the trainer
keeps one value head per component (``critic="multi"``) and logs ``reward/<name>/episodic_return``.
"""

from polyreward.gym.config import GymConfig
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
from polyreward.gym.evaluate import Evaluation, SweepResult, evaluate, hypervolume_2d, pareto_front, weight_sweep
from polyreward.gym.networks import ActorCritic
from polyreward.gym.ppo import PPO, Rollout

__all__ = [
    "PPO",
    "ActorCritic",
    "ComponentWrapper",
    "EnvError",
    "EpisodicCount",
    "Evaluation",
    "GlobalCount",
    "GymConfig",
    "RewardVecEnv",
    "Rollout",
    "Step",
    "SweepResult",
    "evaluate",
    "hypervolume_2d",
    "make_env",
    "make_vec_env",
    "pareto_front",
    "reward_names",
    "weight_sweep",
]
