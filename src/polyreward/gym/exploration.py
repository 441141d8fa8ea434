"""Learned exploration bonuses and the bonus reward pipeline (Henaff et al. 2023, arXiv 2306.03236).

Pure, shape-documented pieces, then one stateful wrapper the trainer uses:

- :class:`EllipticalEpisodicBonus` — E3B's ``b = phi^T C^{-1} phi`` with one inverse per env, updated
  by Sherman-Morrison after the bonus is computed and reset to ``I / ridge`` at episode start;
- :class:`InverseDynamics` — the encoder ``phi`` trained only through ``g(phi(s), phi(s')) -> a``;
- :class:`RNDBonus` — random fixed target, trained predictor, ``||f_pred(s') - f_target(s')||_2``;
- :func:`noveld` — ``max(rnd(s') - alpha * rnd(s), 0)``;
- :class:`RunningStd` — the E3B code's ``reward_norm='int'``: divide by a running std;
- :class:`ExplorationBonus` — count parts (from the env) and learned parts -> ``combine_bonuses`` ->
  normalization -> clipping: the ``"bonus"`` component ``[T, E]`` of a rollout, plus the training
  of the bonus networks once per update.

Shapes: ``N`` rows (envs or samples), ``D`` observation features, ``d`` feature dimension,
``A`` discrete actions (or an ``A``-dimensional continuous action), ``T`` steps, ``E`` envs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyreward.gym.config import GymConfig, bonus_kinds
from polyreward.gym.networks import layer
from polyreward.shaping import combine_bonuses


def relu_mlp(inputs: int, hidden: Sequence[int], outputs: int) -> nn.Sequential:
    """``inputs -> hidden... -> outputs``, ReLU between layers, orthogonal init (as the E3B code's nets)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [layer(inputs, width), nn.ReLU()]
        inputs = width
    layers.append(layer(inputs, outputs, gain=1.0))
    return nn.Sequential(*layers)


class EllipticalEpisodicBonus:
    """E3B's elliptical episodic bonus, one inverse covariance per env (arXiv 2306.03236, Alg. 1).

    ``b(s_t) = phi(s_t)^T C_{t-1}^{-1} phi(s_t)`` with ``C_{t-1} = ridge * I + sum_{i<t} phi_i phi_i^T``.
    After the bonus, ``C^{-1} <- C^{-1} - u u^T / (1 + b)`` with ``u = C^{-1} phi`` (Sherman-Morrison).
    Kept in float64: the rank-1 downdates run for a whole episode.
    """

    def __init__(self, dim: int, ridge: float = 0.1, zero_first: bool = True, num_envs: int | None = None):
        if dim < 1 or not ridge > 0:
            raise ValueError(f"EllipticalEpisodicBonus: expected dim >= 1 and ridge > 0, got dim={dim}, ridge={ridge}")
        self.dim, self.ridge, self.zero_first = dim, ridge, zero_first
        self.inverse: Tensor | None = None if num_envs is None else self._fresh(num_envs)

    def _fresh(self, n: int) -> Tensor:
        return torch.eye(self.dim, dtype=torch.float64).repeat(n, 1, 1) / self.ridge

    def step(self, phi: Tensor, episode_start: Tensor | Sequence[bool], active: Tensor | None = None) -> Tensor:
        """Bonus of ``phi[N, d]`` per env -> ``b[N]`` (float64), then the rank-1 update.

        ``episode_start[N]``: reset that env's inverse to ``I / ridge`` first; with ``zero_first`` its
        bonus is reported as 0, but ``phi`` still enters ``C``. ``active[N]`` (default all): rows
        that are False are neither updated nor rewarded (their bonus is 0).
        """
        phi = torch.as_tensor(phi).to(torch.float64)
        n = phi.shape[0]
        start = torch.as_tensor(episode_start, dtype=torch.bool).reshape(n)
        active = torch.ones(n, dtype=torch.bool) if active is None else torch.as_tensor(active, dtype=torch.bool)
        if self.inverse is None:
            self.inverse = self._fresh(n)
        if self.inverse.shape != (n, self.dim, self.dim) or phi.shape != (n, self.dim):
            raise ValueError(
                f"EllipticalEpisodicBonus: phi {tuple(phi.shape)} does not fit {self.inverse.shape[0]} envs x dim {self.dim}"
            )
        self.inverse[start & active] = self._fresh(int((start & active).sum()))
        u = torch.einsum("nij,nj->ni", self.inverse, phi)
        b = (phi * u).sum(-1)
        update = u[:, :, None] * u[:, None, :] / (1.0 + b)[:, None, None]
        self.inverse -= torch.where(active[:, None, None], update, torch.zeros_like(update))
        if self.zero_first:
            b = torch.where(start, torch.zeros_like(b), b)
        return torch.where(active, b, torch.zeros_like(b))


class InverseDynamics(nn.Module):
    """E3B's feature encoder ``phi: [N, D] -> [N, d]`` and inverse-dynamics head ``g``.

    ``phi`` is trained only through ``loss``: cross-entropy of ``g(phi(s), phi(s'))`` against the
    discrete action ``a`` (the E3B code, ``inverse_loss_coef = 1``). For a continuous action (not in
    the paper) ``g`` regresses ``a`` with the mean squared error.
    """

    def __init__(self, obs_dim: int, feature_dim: int, action_space: gym.Space, hidden: Sequence[int] = (128, 128)):
        super().__init__()
        if isinstance(action_space, gym.spaces.Discrete):
            self.discrete, outputs = True, int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            self.discrete, outputs = False, int(action_space.shape[0])
        else:
            raise TypeError(f"InverseDynamics: action space {action_space} is not Discrete or a 1-D Box")
        self.encoder = relu_mlp(obs_dim, hidden, feature_dim)
        self.head = relu_mlp(2 * feature_dim, hidden[-1:], outputs)

    def features(self, obs: Tensor) -> Tensor:
        """``phi(obs)``: ``[N, D] -> [N, d]``."""
        return self.encoder(obs)

    def loss(self, obs: Tensor, next_obs: Tensor, actions: Tensor) -> Tensor:
        """Scalar inverse-dynamics loss on ``obs[N, D]``, ``next_obs[N, D]``, ``actions[N]`` (or ``[N, A]``)."""
        pred = self.head(torch.cat([self.features(obs), self.features(next_obs)], dim=-1))
        if self.discrete:
            return F.cross_entropy(pred, actions.long())
        return F.mse_loss(pred, actions.float())


class RNDBonus(nn.Module):
    """Random network distillation (Burda et al. 2018) as E3B's global bonus.

    ``bonus(next_obs[N, D]) -> b[N] = ||f_pred(s') - f_target(s')||_2`` (no gradient); the target is
    random and fixed, the predictor is trained by ``loss`` (the E3B code: ``rnd_loss_coef = 1``,
    predictor lr 1e-4).
    """

    def __init__(self, obs_dim: int, feature_dim: int = 64, hidden: Sequence[int] = (128, 128)):
        super().__init__()
        self.target = relu_mlp(obs_dim, hidden, feature_dim).requires_grad_(False)
        self.predictor = relu_mlp(obs_dim, hidden, feature_dim)

    @torch.no_grad()
    def bonus(self, next_obs: Tensor) -> Tensor:
        """``[N, D] -> [N]`` prediction error norm."""
        return (self.predictor(next_obs) - self.target(next_obs)).norm(dim=-1)

    def loss(self, obs: Tensor) -> Tensor:
        """Mean over rows of the squared prediction error ``||f_pred - f_target||^2`` (scalar)."""
        return (self.predictor(obs) - self.target(obs)).pow(2).sum(-1).mean()


def noveld(rnd_s: Tensor, rnd_next: Tensor, alpha: float) -> Tensor:
    """NovelD (Zhang et al. 2021) as used by E3B: ``max(rnd(s') - alpha * rnd(s), 0)``; shapes ``[N] -> [N]``.

    ``alpha`` is the E3B code's ``scale_fac``; ``alpha = 0`` gives plain RND ("E3B x RND").
    """
    return (rnd_next - alpha * rnd_s).clamp(min=0.0)


class RunningStd:
    """Running population standard deviation of every value seen (E3B code, ``reward_norm='int'``).

    ``update(x)`` merges a batch (any shape) with Chan et al.'s parallel formula; ``std`` is
    ``sqrt(M2 / count)`` (numpy's ``np.std``, ddof 0); ``normalize(x) = x / std`` (unchanged while
    ``std == 0``). Unlike the E3B code, which counts ``len(batch)`` (the unroll length T) for a
    ``[T, B]`` batch, every element counts once.
    """

    def __init__(self):
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, x: Tensor) -> None:
        x = torch.as_tensor(x).detach().reshape(-1).to(torch.float64)
        n = x.numel()
        if n == 0:
            return
        batch_mean = float(x.mean())
        batch_m2 = float((x - batch_mean).pow(2).sum())
        total = self.count + n
        delta = batch_mean - self.mean
        self.m2 += batch_m2 + delta * delta * self.count * n / total
        self.mean += delta * n / total
        self.count = total

    @property
    def std(self) -> float:
        return (self.m2 / self.count) ** 0.5 if self.count else 0.0

    def normalize(self, x: Tensor) -> Tensor:
        std = self.std
        return x / std if std > 0 else x

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.count, self.mean, self.m2 = state["count"], state["mean"], state["m2"]


class ExplorationBonus:
    """The ``"bonus"`` component of a rollout and the training of its networks.

    ``kinds``: ``{"episodic": "count" | "e3b", "global": "count" | "rnd" | "noveld"}`` for the parts
    in use (see :func:`polyreward.gym.config.bonus_kinds`); ``mode``: ``episodic``, ``global``,
    ``product`` or ``sum``. Count parts come from the env (``Step.bonus_parts``); learned parts are
    computed here from the rollout. Pipeline per rollout: parts -> ``combine_bonuses`` ->
    ``/ running std`` (``norm="std"``) -> ``clamp(-clip, clip)`` (``clip > 0``).

    State carried across rollouts (saved in checkpoints): networks, their Adam state, the
    normalizer, each env's E3B inverse, whether each env's current observation starts an episode,
    and each env's running episode sum of the bonus.
    """

    def __init__(self, config: GymConfig, obs_dim: int, action_space: gym.Space, num_envs: int, device: torch.device):
        self.kinds = bonus_kinds(config.bonus, config.episodic_bonus, config.global_bonus)
        self.mode, self.config, self.device = config.bonus, config, device
        hidden, dim = config.bonus_hidden_sizes, config.bonus_feature_dim
        self.modules: dict[str, nn.Module] = {}
        self.elliptical: EllipticalEpisodicBonus | None = None
        if self.kinds.get("episodic") == "e3b":
            self.modules["inverse_dynamics"] = InverseDynamics(obs_dim, dim, action_space, hidden).to(device)
            self.elliptical = EllipticalEpisodicBonus(dim, config.e3b_ridge, zero_first=True, num_envs=num_envs)
        if self.kinds.get("global") in ("rnd", "noveld"):
            self.modules["rnd"] = RNDBonus(obs_dim, dim, hidden).to(device)
        params = [p for m in self.modules.values() for p in m.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=config.bonus_lr) if params else None
        self.normalizer = RunningStd()
        self.starts = np.ones(num_envs, dtype=bool)
        self.carry = np.zeros(num_envs)

    # ------------------------------------------------------------------ rollout
    @torch.no_grad()
    def rollout_bonus(
        self, obs: Tensor, next_obs: Tensor, done: np.ndarray, count_parts: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray], dict[str, float]]:
        """``(bonus[T, E], ended[T], metrics)`` for one rollout.

        ``obs[T, E, D]``: ``s_t`` (a reset observation where an episode starts); ``next_obs[T, E, D]``:
        the true ``s_{t+1}``; ``done[T, E]``: terminated or truncated; ``count_parts``: ``[T, E]``
        arrays from the env. ``ended[t]``: the bonus returns of the episodes ending at step ``t``,
        in env order (the order of ``Step.episode_returns``).
        """
        parts = {name: torch.from_numpy(np.asarray(v, dtype=np.float64)) for name, v in count_parts.items()}
        starts = np.concatenate([self.starts[None], done[:-1]], axis=0)
        if self.kinds.get("episodic") == "e3b":
            parts["episodic"] = self._elliptical(obs, next_obs, starts)
        if self.kinds.get("global") in ("rnd", "noveld"):
            parts["global"] = self._rnd(obs, next_obs)
        missing = sorted(set(self.kinds) - set(parts))
        if missing:
            raise ValueError(f"bonus: the env gave no count parts {missing} (Step.bonus_parts has {sorted(parts)})")
        raw = parts["episodic"] if "global" not in parts else parts["global"]
        if len(parts) == 2:
            raw = combine_bonuses(parts["global"], parts["episodic"], self.mode, self.config.bonus_global_coef)
        bonus, clipfrac = self._normalize_and_clip(raw)
        self.starts = done[-1].copy()
        ended = self._episode_sums(bonus.numpy(), done)
        metrics = {f"bonus/{name}_mean": float(v.mean()) for name, v in parts.items()}
        metrics.update({"bonus/raw_mean": float(raw.mean()), "bonus/raw_max": float(raw.max())})
        metrics.update({"bonus/mean": float(bonus.mean()), "bonus/clipfrac": clipfrac})
        if self.config.bonus_norm == "std":
            metrics["bonus/running_std"] = self.normalizer.std
        return bonus.numpy().astype(np.float32), ended, metrics

    def _elliptical(self, obs: Tensor, next_obs: Tensor, starts: np.ndarray) -> Tensor:
        """E3B bonus ``[T, E]`` of every ``s_{t+1}``; a reset ``s_t`` first enters its fresh ``C`` (bonus 0)."""
        encoder = self.modules["inverse_dynamics"]
        t_len, e = starts.shape
        phi = encoder.features(obs.reshape(t_len * e, -1).to(self.device)).cpu().reshape(t_len, e, -1)
        phi_next = encoder.features(next_obs.reshape(t_len * e, -1).to(self.device)).cpu().reshape(t_len, e, -1)
        out = torch.zeros(t_len, e, dtype=torch.float64)
        no_start = torch.zeros(e, dtype=torch.bool)
        for t in range(t_len):
            start = torch.from_numpy(starts[t])
            if start.any():
                self.elliptical.step(phi[t], start, active=start)
            out[t] = self.elliptical.step(phi_next[t], no_start)
        return out

    def _rnd(self, obs: Tensor, next_obs: Tensor) -> Tensor:
        """RND or NovelD bonus ``[T, E]`` of each transition ``s_t -> s_{t+1}``."""
        rnd, shape = self.modules["rnd"], next_obs.shape[:2]
        after = rnd.bonus(next_obs.reshape(-1, next_obs.shape[-1]).to(self.device)).cpu().double()
        if self.kinds["global"] == "rnd":
            return after.reshape(shape)
        before = rnd.bonus(obs.reshape(-1, obs.shape[-1]).to(self.device)).cpu().double()
        return noveld(before, after, self.config.noveld_alpha).reshape(shape)

    def _normalize_and_clip(self, raw: Tensor) -> tuple[Tensor, float]:
        """``raw[T, E]`` -> (``raw / running std`` clipped to ``[-clip, clip]``, fraction clipped)."""
        bonus, clip = raw, self.config.bonus_clip
        if self.config.bonus_norm == "std":
            self.normalizer.update(raw)
            bonus = self.normalizer.normalize(raw)
        if clip <= 0:
            return bonus, 0.0
        return bonus.clamp(-clip, clip), float((bonus.abs() > clip).double().mean())

    def _episode_sums(self, bonus: np.ndarray, done: np.ndarray) -> list[np.ndarray]:
        ended = []
        for t in range(len(bonus)):
            self.carry += bonus[t]
            ended.append(self.carry[done[t]].copy())
            self.carry[done[t]] = 0.0
        return ended

    # ------------------------------------------------------------------ training
    def train(self, obs: Tensor, next_obs: Tensor, actions: Tensor, generator: torch.Generator) -> dict[str, float]:
        """``bonus_epochs`` passes of ``minibatches`` Adam steps on the transitions of a rollout
        (``obs[T, E, D]``, ``next_obs[T, E, D]``, ``actions[T, E(, A)]``); returns mean losses
        ``losses/inverse_dynamics`` and ``losses/rnd``."""
        if self.optimizer is None:
            return {}
        n = obs.shape[0] * obs.shape[1]
        obs, next_obs = obs.reshape(n, -1).to(self.device), next_obs.reshape(n, -1).to(self.device)
        actions = actions.reshape(n, *actions.shape[2:]).to(self.device)
        sums = dict.fromkeys(self.modules, 0.0)
        count = 0
        for _ in range(self.config.bonus_epochs):
            for rows in torch.randperm(n, generator=generator).split(n // self.config.minibatches):
                losses = self._losses(obs[rows], next_obs[rows], actions[rows])
                self.optimizer.zero_grad(set_to_none=True)
                sum(losses.values()).backward()
                self.optimizer.step()
                for name, value in losses.items():
                    sums[name] += float(value.detach())
                count += 1
        return {f"losses/{name}": value / count for name, value in sums.items()}

    def _losses(self, obs: Tensor, next_obs: Tensor, actions: Tensor) -> dict[str, Tensor]:
        """``{"inverse_dynamics": CE or MSE, "rnd": MSE}`` on one minibatch (the networks in use)."""
        losses = {}
        if "inverse_dynamics" in self.modules:
            losses["inverse_dynamics"] = self.modules["inverse_dynamics"].loss(obs, next_obs, actions)
        if "rnd" in self.modules:
            losses["rnd"] = self.modules["rnd"].loss(next_obs)
        return losses

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Networks, optimizer, normalizer and the per-env episode state (E3B inverses, starts, sums)."""
        return {
            "modules": {name: m.state_dict() for name, m in self.modules.items()},
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "normalizer": self.normalizer.state_dict(),
            "inverse": None if self.elliptical is None else self.elliptical.inverse.clone(),
            "starts": self.starts.copy(),
            "carry": self.carry.copy(),
        }

    def load_state_dict(self, state: dict[str, Any], episodes: bool = True) -> None:
        """Restore :meth:`state_dict`; ``episodes=False`` keeps fresh episode state (the envs were reset)."""
        for name, module in self.modules.items():
            module.load_state_dict(state["modules"][name])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.normalizer.load_state_dict(state["normalizer"])
        if episodes:
            if self.elliptical is not None:
                self.elliptical.inverse = state["inverse"].clone()
            self.starts, self.carry = state["starts"].copy(), state["carry"].copy()
