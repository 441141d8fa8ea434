"""Environment steps per second: polyreward's gym PPO vs a CleanRL-style single-file PPO.

Same environment, network (actor and critic MLPs 64-64 tanh), rollout (4 envs x 128 steps), 4
epochs x 4 minibatches, Adam, same process and thread count. The peer below follows CleanRL's
``ppo.py`` line by line (Categorical distribution, inline GAE over ``next_done``, per-minibatch
advantage normalization, clipped value loss), adapted to Gymnasium 1.x (NEXT_STEP autoreset,
``RecordEpisodeStatistics`` info) and to vector rewards through MO-Gymnasium's ``LinearReward``
(weights 1). Neither side writes TensorBoard during the timed runs. Target: ratio >= 1.0.

Environments: ``deep-sea-treasure-v0`` (K = 2, a very cheap env: the trainer's own overhead shows)
and ``MiniGrid-Empty-5x5-v0`` (147-d observations, a slower env).

    .venv/bin/python benchmarks/gym_ppo_speed.py      # writes results/gym_ppo_speed.{json,png}
"""

from __future__ import annotations

import json
import platform
import random
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions.categorical import Categorical

from polyreward.gym import PPO, GymConfig
from polyreward.gym.envs import make_env

warnings.filterwarnings("ignore", category=UserWarning)
OUT = Path(__file__).parent / "results"
ENVS = ["deep-sea-treasure-v0", "MiniGrid-Empty-5x5-v0"]
STEPS = 30_720  # 15 updates of 4 envs x 128 steps
REPEATS = 5
SQRT2 = float(np.sqrt(2))
SETUP = {"num_envs": 4, "num_steps": 128, "epochs": 4, "minibatches": 4, "lr": 2.5e-4, "hidden": [64, 64]}


# ---------------------------------------------------------------------- CleanRL-style peer
def layer_init(layer, std=SQRT2, bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    def __init__(self, envs):
        super().__init__()
        n = int(np.array(envs.single_observation_space.shape).prod())
        self.critic = nn.Sequential(
            layer_init(nn.Linear(n, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 1), std=1.0),
        )
        self.actor = nn.Sequential(
            layer_init(nn.Linear(n, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, envs.single_action_space.n), std=0.01),
        )

    def get_value(self, x):
        return self.critic(x)

    def get_action_and_value(self, x, action=None):
        logits = self.actor(x)
        probs = Categorical(logits=logits)
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(x)


def cleanrl_env(env_id):
    def thunk():
        env = make_env(env_id)  # the same observation flattening as polyreward
        if hasattr(env.unwrapped, "reward_space"):
            from mo_gymnasium.wrappers import LinearReward

            env = LinearReward(env, weight=np.ones(env.unwrapped.reward_space.shape[0], dtype=np.float32))
        env = gym.wrappers.RecordEpisodeStatistics(env)
        return env

    return thunk


def cleanrl_ppo(env_id: str, total_steps: int, seed: int = 0) -> dict:
    num_envs, num_steps = SETUP["num_envs"], SETUP["num_steps"]
    batch_size = num_envs * num_steps
    minibatch_size = batch_size // SETUP["minibatches"]
    num_iterations = total_steps // batch_size
    gamma, gae_lambda, clip_coef, ent_coef, vf_coef, max_grad_norm = 0.99, 0.95, 0.2, 0.01, 0.5, 0.5
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    device = torch.device("cpu")
    envs = gym.vector.SyncVectorEnv([cleanrl_env(env_id) for _ in range(num_envs)])
    agent = Agent(envs).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=SETUP["lr"], eps=1e-5)
    obs = torch.zeros((num_steps, num_envs, *envs.single_observation_space.shape)).to(device)
    actions = torch.zeros((num_steps, num_envs, *envs.single_action_space.shape)).to(device)
    logprobs = torch.zeros((num_steps, num_envs)).to(device)
    rewards = torch.zeros((num_steps, num_envs)).to(device)
    dones = torch.zeros((num_steps, num_envs)).to(device)
    values = torch.zeros((num_steps, num_envs)).to(device)
    global_step, returns_seen = 0, []
    start_time = time.time()
    next_obs, _ = envs.reset(seed=seed)
    next_obs = torch.Tensor(next_obs).to(device)
    next_done = torch.zeros(num_envs).to(device)
    for iteration in range(1, num_iterations + 1):
        frac = 1.0 - (iteration - 1.0) / num_iterations
        optimizer.param_groups[0]["lr"] = frac * SETUP["lr"]
        for step in range(0, num_steps):
            global_step += num_envs
            obs[step] = next_obs
            dones[step] = next_done
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
                values[step] = value.flatten()
            actions[step] = action
            logprobs[step] = logprob
            next_obs, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
            next_done = np.logical_or(terminations, truncations)
            rewards[step] = torch.tensor(reward).to(device).view(-1)
            next_obs, next_done = torch.Tensor(next_obs).to(device), torch.Tensor(next_done).to(device)
            if "episode" in infos:
                returns_seen.extend(infos["episode"]["r"][infos["_episode"]].tolist())
        with torch.no_grad():
            next_value = agent.get_value(next_obs).reshape(1, -1)
            advantages = torch.zeros_like(rewards).to(device)
            lastgaelam = 0
            for t in reversed(range(num_steps)):
                if t == num_steps - 1:
                    nextnonterminal = 1.0 - next_done
                    nextvalues = next_value
                else:
                    nextnonterminal = 1.0 - dones[t + 1]
                    nextvalues = values[t + 1]
                delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]
                advantages[t] = lastgaelam = delta + gamma * gae_lambda * nextnonterminal * lastgaelam
            returns = advantages + values
        b_obs = obs.reshape((-1, *envs.single_observation_space.shape))
        b_logprobs = logprobs.reshape(-1)
        b_actions = actions.reshape((-1, *envs.single_action_space.shape))
        b_advantages = advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        b_values = values.reshape(-1)
        b_inds = np.arange(batch_size)
        clipfracs = []
        for _epoch in range(SETUP["epochs"]):
            np.random.shuffle(b_inds)
            for start in range(0, batch_size, minibatch_size):
                mb_inds = b_inds[start : start + minibatch_size]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb_inds], b_actions.long()[mb_inds])
                logratio = newlogprob - b_logprobs[mb_inds]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs += [((ratio - 1.0).abs() > clip_coef).float().mean().item()]
                mb_advantages = b_advantages[mb_inds]
                mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
                pg_loss1 = -mb_advantages * ratio
                pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()
                newvalue = newvalue.view(-1)
                v_loss_unclipped = (newvalue - b_returns[mb_inds]) ** 2
                v_clipped = b_values[mb_inds] + torch.clamp(newvalue - b_values[mb_inds], -clip_coef, clip_coef)
                v_loss_clipped = (v_clipped - b_returns[mb_inds]) ** 2
                v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
                entropy_loss = entropy.mean()
                loss = pg_loss - ent_coef * entropy_loss + v_loss * vf_coef
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), max_grad_norm)
                optimizer.step()
        _ = approx_kl.item(), float(np.mean(clipfracs)), v_loss.item(), pg_loss.item(), entropy_loss.item()
    elapsed = time.time() - start_time
    envs.close()
    return {"steps": global_step, "seconds": elapsed, "sps": global_step / elapsed, "last_returns": returns_seen[-20:]}


# ---------------------------------------------------------------------- polyreward
def polyreward_ppo(env_id: str, total_steps: int, critic: str, seed: int = 0) -> dict:
    run_dir = tempfile.mkdtemp(prefix="gym_ppo_speed_")
    config = GymConfig(
        env_id=env_id,
        critic=critic,
        num_envs=SETUP["num_envs"],
        num_steps=SETUP["num_steps"],
        epochs=SETUP["epochs"],
        minibatches=SETUP["minibatches"],
        lr=SETUP["lr"],
        hidden_sizes=SETUP["hidden"],
        seed=seed,
        output_dir=run_dir,
        tensorboard=False,
    )
    ppo = PPO(env_id, config)
    start = time.time()
    ppo.learn(total_steps, progress=False)
    elapsed = time.time() - start
    ppo.env.close()
    shutil.rmtree(run_dir)
    return {"steps": ppo.global_step, "seconds": elapsed, "sps": ppo.global_step / elapsed}


def main() -> None:
    torch.set_num_threads(2)
    runs = {
        "cleanrl_style": lambda env_id, steps: cleanrl_ppo(env_id, steps),
        "polyreward_single": lambda env_id, steps: polyreward_ppo(env_id, steps, "single"),
        "polyreward_multi": lambda env_id, steps: polyreward_ppo(env_id, steps, "multi"),
    }
    results: dict[str, dict] = {}
    for env_id in ENVS:
        for fn in runs.values():  # warm-up: imports, env registration, allocator
            fn(env_id, 2 * 512 * 4)
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(REPEATS):  # interleaved, so that load changes hit every implementation alike
            for name, fn in runs.items():
                samples[name].append(fn(env_id, STEPS)["sps"])
        medians = {name: statistics.median(v) for name, v in samples.items()}
        best = {name: max(v) for name, v in samples.items()}
        results[env_id] = {
            "sps": samples,
            "median_sps": medians,
            "best_sps": best,
            "ratio_single_vs_cleanrl_best": best["polyreward_single"] / best["cleanrl_style"],
            "ratio_multi_vs_cleanrl_best": best["polyreward_multi"] / best["cleanrl_style"],
            "ratio_single_vs_cleanrl": medians["polyreward_single"] / medians["cleanrl_style"],
            "ratio_multi_vs_cleanrl": medians["polyreward_multi"] / medians["cleanrl_style"],
        }
        print(
            f"{env_id:<24} cleanrl {medians['cleanrl_style']:8.0f}  single {medians['polyreward_single']:8.0f} "
            f"({results[env_id]['ratio_single_vs_cleanrl']:.2f}x)  multi {medians['polyreward_multi']:8.0f} "
            f"({results[env_id]['ratio_multi_vs_cleanrl']:.2f}x) env-steps/s"
        )
    report = {
        "setup": {
            **SETUP,
            "total_steps": STEPS,
            "repeats": REPEATS,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "gymnasium": gym.__version__,
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "target_ratio": 1.0,
        "results": results,
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "gym_ppo_speed.json").write_text(json.dumps(report, indent=2))
    plot(report)


def plot(report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["cleanrl_style", "polyreward_single", "polyreward_multi"]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.25
    for j, name in enumerate(names):
        xs = [i + (j - 1) * width for i in range(len(ENVS))]
        ys = [report["results"][e]["median_sps"][name] for e in ENVS]
        ax.bar(xs, ys, width, label=name)
        for x, y, env_id in zip(xs, ys, ENVS, strict=True):
            ratio = y / report["results"][env_id]["median_sps"]["cleanrl_style"]
            ax.text(x, y, f"{ratio:.2f}x", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(ENVS)), ENVS)
    ax.set_ylabel("env-steps/s (median of %d)" % report["setup"]["repeats"])
    ax.set_title("PPO training throughput, 4 envs x 128 steps, 64-64 MLPs, CPU")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "gym_ppo_speed.png", dpi=120)


if __name__ == "__main__":
    main()
