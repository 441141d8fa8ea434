"""PPO on vector-reward environments: one value head per reward component, or one on their sum.

One update: rollout -> ``RewardBatch.from_steps`` -> advantage estimator (``multi_critic`` with
``norm=per_critic`` (SLIM) / ``scalarized`` (MOPPO) / ``none``, or ``gae`` on the weighted sum for
``critic="single"``) -> clipped surrogate + per-critic value loss + entropy bonus -> Adam -> metrics.
The loop follows CleanRL's ``ppo.py``; the math lives in ``polyreward.advantages`` and
``polyreward.lm.loss``. Options call small classes: the exploration bonus (``ExplorationBonus``), the
PVN auxiliary loss (``PVNAuxiliary``, ``pvn_coef > 0``), the ADS discount (``DiscountSchedule``,
``ads_demos``), BARFI's learned weights (``RewardBlend``, ``barfi_primary``) and the task curriculum
(``TaskCurriculum``, ``tasks``).
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from polyreward import advantages
from polyreward.batch import RewardBatch
from polyreward.checkpoint import MARKER, CheckpointError, checkpoint_dir, latest_checkpoint, load_state
from polyreward.config import ConfigError, from_mapping, to_mapping
from polyreward.diagnostics import advantage_share
from polyreward.gym.ads import DiscountSchedule
from polyreward.gym.barfi import RewardBlend
from polyreward.gym.config import GymConfig, resolve_weights
from polyreward.gym.curriculum import TaskCurriculum
from polyreward.gym.envs import RewardVecEnv, make_vec_env
from polyreward.gym.evaluate import task_metrics
from polyreward.gym.exploration import ExplorationBonus
from polyreward.gym.networks import ActorCritic, MoESpec, action_array
from polyreward.gym.pvn import PVNAuxiliary
from polyreward.lm.loss import clipped_surrogate
from polyreward.runlog import RunLog

Callback = Callable[["PPO", dict[str, float]], "bool | None"]
INTRINSIC = ("bonus", "shaping")  # components that steer training but are not the task's objective


@dataclasses.dataclass
class Rollout:
    """``T`` steps of ``E`` envs. ``obs[T, E, D]``, ``actions[T, E(, A)]``, ``logprobs[T, E]``,
    ``values[T, E, C]`` and ``next_values[T, E, C]`` (``C`` critics; ``next_values`` from the true
    ``s_{t+1}``, also at truncation), ``rewards[T, E, K]``, ``terminated`` / ``truncated[T, E]``;
    finished episodes: ``episode_returns[M, K]``, ``episode_lengths[M]``; ``next_obs[T, E, D]``: the
    true ``s_{t+1}``; ``metrics``: the exploration bonus's rollout metrics (``bonus/...``);
    ``episode_envs[M]``: the env each finished episode ran in."""

    obs: Tensor
    actions: Tensor
    logprobs: Tensor
    values: Tensor
    next_values: Tensor
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor
    episode_returns: np.ndarray
    episode_lengths: np.ndarray
    next_obs: Tensor | None = None
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    episode_envs: np.ndarray | None = None
    episode_tasks: np.ndarray | None = None  # [M] task index of each finished episode (task-set envs)


class PPO:
    """``PPO(env_id_or_vecenv, config).learn(total_steps, callback=None)``.

    ``env``: a Gymnasium / MO-Gymnasium id (built with :func:`make_vec_env` from ``config``), or a
    :class:`RewardVecEnv`. ``callback(ppo, metrics)`` runs after every update; returning ``False``
    stops training.
    """

    def __init__(self, env: str | RewardVecEnv, config: GymConfig | None = None):
        config = config or GymConfig()
        if isinstance(env, str):
            config = dataclasses.replace(config, env_id=env)
            env = make_vec_env(config)
        if env.num_envs != config.num_envs:  # e.g. Meta-World MT10: one env per task
            config = dataclasses.replace(config, num_envs=env.num_envs)  # re-validates minibatch divisibility
        bonus = {"bonus": env.bonus, "episodic_bonus": env.episodic_bonus, "global_bonus": env.global_bonus}
        if any(getattr(config, key) != value for key, value in bonus.items()):  # the env decides its bonus parts
            config = dataclasses.replace(config, **bonus)
        self.config, self.env = config, env
        self.names = list(env.names)
        self.weights = torch.tensor(resolve_weights(config.weights, self.names), dtype=torch.float32)
        unknown = sorted(set(config.value_coefs) - set(self.names))
        if unknown:
            raise ConfigError(f"value_coefs: unknown components {unknown}; the components are {self.names}")
        self.critic_names = self.names if config.critic == "multi" else ["weighted"]
        self.value_coefs = torch.tensor([float(config.value_coefs.get(n, 1.0)) for n in self.critic_names])
        if config.threads:
            torch.set_num_threads(config.threads)
        _seed_everything(config.seed)
        self.device = torch.device(config.device)
        self.model = ActorCritic(
            env.obs_dim,
            env.single_action_space,
            len(self.critic_names),
            config.hidden_sizes,
            config.shared_trunk,
            MoESpec(config.moe_experts, config.moe_top_k, config.moe_shared_expert) if config.trunk == "moe" else None,
        ).to(self.device)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.global_step, self.update = 0, 0
        self.run_dir = Path(config.output_dir)
        self._obs: np.ndarray | None = None
        self.exploration = None  # created after the policy, so that its init does not move the policy's
        if config.bonus != "none":
            self.exploration = ExplorationBonus(config, env.obs_dim, env.single_action_space, env.num_envs, self.device)
        self.pvn = None  # the PVN head trains with the policy: same Adam, same gradient clipping
        if config.pvn_coef > 0:
            self.pvn = PVNAuxiliary.from_config(config, env.obs_dim, self.model).to(self.device)
        self.params = [*self.model.parameters(), *([] if self.pvn is None else self.pvn.parameters())]
        self.clip_groups = [self.params] if config.grad_clip == "joint" else _policy_and_rest(self.model, self.params)
        self.optimizer = torch.optim.Adam(self.params, lr=config.lr, eps=1e-5)
        self.ads = DiscountSchedule.from_config(config, env.obs_dim, env.num_envs) if config.ads_demos else None
        self.barfi = RewardBlend.from_config(config, self.names, self.weights, env.obs_dim) if config.barfi_primary else None
        if self.barfi is not None:
            self.weights = self.barfi.weights
        self.curriculum = TaskCurriculum.from_config(config, env) if env.task_set is not None else None

    # ------------------------------------------------------------------ the loop
    def learn(self, total_steps: int | None = None, callback: Callback | None = None, progress: bool = True) -> PPO:
        """Train until ``total_steps`` environment steps (default ``config.total_steps``) have been taken
        in total; a loaded checkpoint continues from its step. Logs to ``config.output_dir``."""
        cfg = self.config
        total = cfg.total_steps if total_steps is None else total_steps
        num_updates = total // cfg.batch_size
        if num_updates < 1:
            raise ConfigError(f"total_steps: {total} is less than one rollout (num_envs * num_steps = {cfg.batch_size})")
        if self.update == 0 and (self.run_dir / "checkpoints").exists():
            raise FileExistsError(f"{self.run_dir}: already holds a run; load it (PPO.load) or choose another output_dir")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(to_mapping(cfg), indent=2))
        if self._obs is None:
            self._obs = self.env.reset(seed=cfg.seed + self.global_step)
        log = RunLog(self.run_dir, tensorboard=cfg.tensorboard)
        bar = _progress(num_updates, self.update, progress)
        try:
            while self.update < num_updates:
                if cfg.anneal_lr:
                    self.optimizer.param_groups[0]["lr"] = cfg.lr * (1.0 - self.update / num_updates)
                metrics = self.train_update()
                self.update += 1
                log.log(self.global_step, metrics)
                bar.update(1)
                bar.set_postfix(return_=f"{metrics.get('charts/episodic_return', float('nan')):.2f}")
                stop = callback is not None and callback(self, metrics) is False
                if stop or self.update == num_updates or (cfg.save_every and self.update % cfg.save_every == 0):
                    self.save()
                if stop:
                    break
        finally:
            bar.close()
            log.close()
        return self

    def train_update(self) -> dict[str, float]:
        """One rollout and one optimization phase; returns the update's metrics."""
        cfg = self.config
        start = time.perf_counter()
        rollout = self.collect()
        collected = time.perf_counter()
        ended = (rollout.terminated | rollout.truncated).numpy()
        ads_metrics = {} if self.ads is None else self.ads.observe(rollout.obs, rollout.next_obs, ended)
        if self.pvn is not None:
            self.pvn.calibrate(rollout.obs)  # once: the indicator sets then stay fixed
        adv, returns, shares = self.advantages(rollout)
        outer = self.barfi is not None and self.update % cfg.barfi_every == 0
        before = self.barfi.snapshot(self.model) if outer else None  # BARFI: θ before the inner update
        metrics = self.optimize(rollout, adv, returns)
        metrics.update(ads_metrics)
        if self.barfi is not None:
            metrics.update(self.barfi.outer_step(self.model, rollout, before, self.gamma, cfg.lam) if outer else {})
            self.weights = self.barfi.weights
            metrics.update(self.barfi.metrics())
        if self.curriculum is not None:
            metrics.update(self.curriculum.observe(rollout.episode_tasks, rollout.episode_returns, self.global_step))
        if self.exploration is not None:
            metrics.update(rollout.metrics)
            metrics.update(self.exploration.train(rollout.obs, rollout.next_obs, rollout.actions, self.generator))
        done = time.perf_counter()
        metrics.update(self._episode_metrics(rollout))
        metrics.update(self._reward_metrics(rollout, shares))
        metrics.update(
            {
                "charts/sps": rollout.rewards.shape[0] * rollout.rewards.shape[1] / (done - start),
                "charts/learning_rate": self.optimizer.param_groups[0]["lr"],
                "time/rollout_s": collected - start,
                "time/update_s": done - collected,
            }
        )
        return metrics

    # ------------------------------------------------------------------ stages
    @torch.no_grad()
    def collect(self) -> Rollout:
        """``num_steps`` steps of every env with the current policy (sampling)."""
        cfg, env, device = self.config, self.env, self.device
        t_len, e = cfg.num_steps, env.num_envs
        obs_buf = torch.zeros(t_len, e, env.obs_dim)
        final_buf = torch.zeros(t_len, e, env.obs_dim)
        act_shape = () if self.model.discrete else (self.model.action_dim,)
        actions_buf = torch.zeros(t_len, e, *act_shape, dtype=torch.long if self.model.discrete else torch.float32)
        logp_buf, values_buf = torch.zeros(t_len, e), torch.zeros(t_len, e, len(self.critic_names))
        rewards = np.zeros((t_len, e, len(self.names)), dtype=np.float32)
        terminated, truncated = np.zeros((t_len, e), dtype=bool), np.zeros((t_len, e), dtype=bool)
        ep_returns, ep_lengths, parts = [], [], {}
        ep_envs, ep_tasks = [], []
        obs = torch.from_numpy(self._obs)
        for t in range(t_len):
            obs_buf[t] = obs
            actions, logp, values = self.model.act(obs.to(device))
            step = env.step(action_array(actions, env.single_action_space))
            actions_buf[t], logp_buf[t], values_buf[t] = actions.cpu(), logp.cpu(), values.cpu()
            rewards[t], terminated[t], truncated[t] = step.rewards, step.terminated, step.truncated
            final_buf[t] = torch.from_numpy(step.final_obs)
            ep_returns.append(step.episode_returns)
            ep_lengths.append(step.episode_lengths)
            ep_envs.append(step.episode_envs)
            ep_tasks.append(step.episode_tasks)
            for name, value in step.bonus_parts.items():
                parts.setdefault(name, np.zeros((t_len, e)))[t] = value
            obs = torch.from_numpy(step.obs)
        self._obs = step.obs
        self.global_step += t_len * e
        metrics = self._shape_rewards(obs_buf, final_buf, rewards, terminated | truncated, parts, ep_returns)
        next_values = self.model.value(final_buf.reshape(t_len * e, -1).to(device)).cpu().reshape(t_len, e, -1)
        return Rollout(
            obs_buf,
            actions_buf,
            logp_buf,
            values_buf,
            next_values,
            torch.from_numpy(rewards),
            torch.from_numpy(terminated),
            torch.from_numpy(truncated),
            np.concatenate(ep_returns).reshape(-1, len(self.names)),
            np.concatenate(ep_lengths),
            final_buf,
            metrics,
            episode_envs=np.concatenate(ep_envs),
            episode_tasks=np.concatenate(ep_tasks),
        )

    def _shape_rewards(
        self,
        obs: Tensor,
        next_obs: Tensor,
        rewards: np.ndarray,
        done: np.ndarray,
        parts: dict[str, np.ndarray],
        ep_returns: list[np.ndarray],
    ) -> dict[str, float]:
        """Training rewards of a rollout, in place: the ``"bonus"`` column ``rewards[T, E, k]`` from
        :class:`ExplorationBonus` (the episode returns of ``"bonus"`` in ``ep_returns[t][M_t, K]``
        follow it), and ``reward_clip`` on the other components (their episode returns stay raw)."""
        metrics: dict[str, float] = {}
        task = [k for k, name in enumerate(self.names) if name not in INTRINSIC]
        if self.config.reward_clip > 0:
            rewards[..., task] = rewards[..., task].clip(-self.config.reward_clip, self.config.reward_clip)
        if self.exploration is not None:
            k = self.names.index("bonus")
            rewards[..., k], ended, metrics = self.exploration.rollout_bonus(obs, next_obs, done, parts)
            for returns, bonus_returns in zip(ep_returns, ended, strict=True):
                returns[:, k] = bonus_returns
        return metrics

    @property
    def gamma(self) -> float:
        """The discount of the advantages: ``config.gamma``, or the ADS schedule's current one."""
        return self.config.gamma if self.ads is None else self.ads.gamma

    def advantages(self, rollout: Rollout) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(advantages[T, E], returns[T, E, C], share[K] or None)`` from the registered estimators;
        ``share``: each component's part of the advantage mass (multi-critic only)."""
        cfg = self.config
        batch = RewardBatch.from_steps(rollout.rewards, self.names, rollout.terminated, rollout.truncated, self.weights)
        if cfg.critic == "multi":
            result = advantages.compute(
                "multi_critic",
                batch,
                values=rollout.values,
                next_values=rollout.next_values,
                gamma=self.gamma,
                lam=cfg.lam,
                norm=cfg.critic_norm,
            )
            if self.barfi is not None:  # BARFI's weights may differ per state: recombine per sample
                result = self.barfi.reweight(result, rollout.obs, cfg.critic_norm)
            return result.advantages, result.extras["returns"], advantage_share(result, len(self.names))
        result = advantages.compute(
            "gae",
            batch,
            values=rollout.values[..., 0],
            next_values=rollout.next_values[..., 0],
            gamma=self.gamma,
            lam=cfg.lam,
        )
        adv = result.advantages
        if cfg.critic_norm != "none":  # one critic: per_critic and scalarized coincide
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        return adv, result.extras["returns"][..., None], None

    def optimize(self, rollout: Rollout, adv: Tensor, returns: Tensor) -> dict[str, float]:
        """``epochs`` passes of ``minibatches`` Adam steps on the clipped surrogate, per-critic value
        loss ``sum_k c_k 0.5 (V_k - R_k)^2``, entropy bonus and, if on, the MoE balance and PVN losses."""
        cfg, device = self.config, self.device
        n = rollout.logprobs.numel()
        obs = rollout.obs.reshape(n, -1).to(device)
        actions = rollout.actions.reshape(n, *rollout.actions.shape[2:]).to(device)
        old_logp, b_adv = rollout.logprobs.reshape(n).to(device), adv.reshape(n).to(device)
        old_values = rollout.values.reshape(n, -1).to(device)
        b_returns = returns.reshape(n, -1).to(device)
        coefs = self.value_coefs.to(device)
        if self.pvn is not None:
            next_obs, terminated = rollout.next_obs.reshape(n, -1).to(device), rollout.terminated.reshape(n).to(device)
        sums = {"policy": 0.0, "entropy": 0.0, "approx_kl": 0.0, "clipfrac": 0.0}
        value_sums = torch.zeros(len(self.critic_names))
        count = 0
        for _ in range(cfg.epochs):
            for rows in torch.randperm(n, generator=self.generator).split(n // cfg.minibatches):
                logp, entropy, values, features = self.model.evaluate_features(obs[rows], actions[rows])
                per_row, clipped = clipped_surrogate(logp[:, None], old_logp[rows, None], b_adv[rows], cfg.clip, cfg.clip)
                policy_loss = per_row.mean()
                value_loss = _value_loss(values, old_values[rows], b_returns[rows], cfg.clip if cfg.clip_value else None)
                loss = policy_loss - cfg.ent_coef * entropy.mean() + cfg.vf_coef * (coefs * value_loss).sum()
                if cfg.trunk == "moe":  # Switch load balancing of the trunks' routers (this minibatch's forward)
                    balance = self.model.balance_loss()
                    loss = loss + cfg.moe_balance_coef * balance
                    sums["moe_balance"] = sums.get("moe_balance", 0.0) + float(balance.detach())
                if self.pvn is not None:  # after balance_loss(): its s' pass would overwrite the routers' loss
                    pvn = self.pvn.loss(self.model, features, actions[rows], next_obs[rows], terminated[rows])
                    loss = loss + cfg.pvn_coef * pvn
                    sums["pvn"] = sums.get("pvn", 0.0) + float(pvn.detach())
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm:
                    for group in self.clip_groups:
                        torch.nn.utils.clip_grad_norm_(group, cfg.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    log_ratio = logp - old_logp[rows]
                    sums["approx_kl"] += float(((log_ratio.exp() - 1) - log_ratio).mean())
                    sums["clipfrac"] += float(clipped.mean())
                    sums["policy"] += float(policy_loss)
                    sums["entropy"] += float(entropy.mean())
                    value_sums += value_loss.detach().cpu()
                count += 1
        metrics = {f"losses/{k}": v / count for k, v in sums.items()}
        metrics.update(
            {f"losses/value_{name}": float(v) / count for name, v in zip(self.critic_names, value_sums, strict=True)}
        )
        return metrics

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for ``obs[B, D]`` (flattened, float) as the env expects them."""
        tensor = torch.as_tensor(obs, dtype=torch.float32, device=self.device).reshape(len(obs), -1)
        actions, _, _ = self.model.act(tensor, deterministic=deterministic)
        return action_array(actions, self.env.single_action_space)

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> Path:
        """Write ``run_dir/checkpoints/step-N`` atomically (weights, optimizer, RNG states, the
        sub-envs mid-episode, bonus counts, PVN head and indicator sets, ADS progress and episode
        buffers, step); a ``COMPLETE`` marker is written last."""
        final = checkpoint_dir(self.run_dir, self.global_step)
        staging = final.with_name(final.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(),
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
                "envs": self.env.snapshot(),
                "env_state": self.env.state_dict(),
                "obs": self._obs,
                "exploration": None if self.exploration is None else self.exploration.state_dict(),
                "pvn": None if self.pvn is None else self.pvn.state_dict(),
                "ads": None if self.ads is None else self.ads.state_dict(),
                "barfi": None if self.barfi is None else self.barfi.state_dict(),
                "curriculum": None if self.curriculum is None else self.curriculum.state_dict(),
            },
            staging / "state.pt",
        )
        state = {"step": self.global_step, "update": self.update, "names": self.names, "config": to_mapping(self.config)}
        (staging / "state.json").write_text(json.dumps(state, indent=2))
        (staging / MARKER).write_text(str(self.global_step))
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        return final

    @classmethod
    def load(cls, path: str | Path, env: RewardVecEnv | None = None, **overrides) -> PPO:
        """A PPO from a checkpoint directory or a run directory (its latest checkpoint).

        Restores weights, optimizer, RNG states, bonus counts, the step counters and the sub-envs
        in the middle of their episodes, so that ``learn`` continues exactly as an uninterrupted run
        would (bit-identical on CPU). Passing ``env``, or overriding ``num_envs``, starts fresh
        episodes instead. ``overrides``: config fields to change, e.g. ``output_dir``.
        """
        path = Path(path)
        checkpoint = path if (path / MARKER).is_file() else latest_checkpoint(path)
        saved = load_state(checkpoint)
        config = from_mapping(GymConfig, {**saved["config"], **overrides}, str(checkpoint / "state.json"))
        tensors = torch.load(checkpoint / "state.pt", weights_only=False)
        exact = env is None and len(tensors["envs"]) == config.num_envs
        if env is None:
            env = make_vec_env(config, tensors["envs"] if exact else None)
        ppo = cls(env, config)
        if ppo.names != saved["names"]:
            raise CheckpointError(f"{checkpoint}: components {saved['names']} differ from the environment's {ppo.names}")
        if (ppo.pvn is None) != (tensors.get("pvn") is None):  # the head's parameters are in the optimizer
            raise CheckpointError(f"{checkpoint}: pvn_coef cannot switch the PVN loss on or off when resuming")
        ppo.model.load_state_dict(tensors["model"])
        if ppo.pvn is not None:
            ppo.pvn.load_state_dict(tensors["pvn"])
        ppo.optimizer.load_state_dict(tensors["optimizer"])
        ppo.generator.set_state(tensors["generator"])
        torch.set_rng_state(tensors["torch"])
        np.random.set_state(tensors["numpy"])
        random.setstate(tensors["python"])
        if ppo.exploration is not None:
            ppo.exploration.load_state_dict(tensors["exploration"], episodes=exact)
        if ppo.ads is not None and tensors.get("ads") is not None:
            ppo.ads.load_state_dict(tensors["ads"], episodes=exact)
        if ppo.barfi is not None and tensors.get("barfi") is not None:
            ppo.barfi.load_state_dict(tensors["barfi"])
            ppo.weights = ppo.barfi.weights
        if ppo.curriculum is not None and tensors.get("curriculum") is not None:
            ppo.curriculum.load_state_dict(tensors["curriculum"])
        if exact:
            ppo.env.load_state_dict(tensors["env_state"])
            ppo._obs = tensors["obs"]
        else:
            ppo.env.global_count.counts.update(tensors["env_state"]["global_counts"])
        ppo.global_step, ppo.update = saved["step"], saved["update"]
        RunLog(ppo.run_dir, tensorboard=False).truncate_after(ppo.global_step)
        return ppo

    # ------------------------------------------------------------------ metrics
    def _reward_metrics(self, rollout: Rollout, shares: Tensor | None) -> dict[str, float]:
        """``reward/<name>/mean``: mean reward per env step of each component in the rollout;
        ``diag/<name>/adv_share``: its share of the advantage mass (as the language-model trainer logs)."""
        means = rollout.rewards.reshape(-1, len(self.names)).mean(0)
        out = {f"reward/{name}/mean": float(m) for name, m in zip(self.names, means, strict=True)}
        if shares is not None:
            out.update({f"diag/{name}/adv_share": float(v) for name, v in zip(self.names, shares, strict=True)})
        return out

    def _episode_metrics(self, rollout: Rollout) -> dict[str, float]:
        """Means over the episodes that ended in this rollout (none ended: no episode metrics)."""
        returns = rollout.episode_returns
        if len(returns) == 0:
            return {}
        means = returns.mean(0)
        task = [i for i, name in enumerate(self.names) if name not in INTRINSIC]
        weighted = returns[:, task] @ self.weights.numpy()[task]
        out = {f"reward/{name}/episodic_return": float(m) for name, m in zip(self.names, means, strict=True)}
        out.update(
            {
                "charts/episodic_return": float(weighted.mean()),
                "charts/episodic_length": float(rollout.episode_lengths.mean()),
                "charts/episodes": float(len(returns)),
            }
        )
        if self.env.task_names is not None and rollout.episode_envs is not None:
            success = returns[:, self.names.index("success")] > 0 if "success" in self.names else None
            out.update(task_metrics(self.env.task_names, rollout.episode_envs, weighted, success))
        return out


def _value_loss(values: Tensor, old_values: Tensor, returns: Tensor, clip: float | None) -> Tensor:
    """Per-critic ``0.5 * mean_B (V_k - R_k)^2`` -> ``[C]``; with ``clip``, the pessimistic max with the
    clipped prediction ``V_old + clamp(V - V_old, -clip, clip)`` (CleanRL / MOPPO)."""
    squared = (values - returns).pow(2)
    if clip is not None:
        clipped = old_values + (values - old_values).clamp(-clip, clip)
        squared = torch.maximum(squared, (clipped - returns).pow(2))
    return 0.5 * squared.mean(0)


def _policy_and_rest(model: ActorCritic, params: list[Tensor]) -> list[list[Tensor]]:
    """``[policy parameters, every other parameter]``: the actor trunk, head and ``log_std`` apart from the
    critics (and auxiliary heads), for ``grad_clip="separate"``."""
    policy = [*model.actor_body.parameters(), *model.actor_head.parameters()]
    policy += [model.log_std] if not model.discrete else []
    ids = {id(p) for p in policy}
    return [policy, [p for p in params if id(p) not in ids]]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="ppo", unit="update", disable=not enabled, dynamic_ncols=True)
