"""MLP actor-critic with one value head per reward component (SLIM, arXiv 2402.00823).

Shapes: ``B`` observations of ``D`` features (flattened by :func:`polyreward.gym.envs.make_env`),
``K`` critics, ``A`` discrete actions or an ``A``-dimensional continuous action.
The default layout is CleanRL's: separate actor and critic MLPs of tanh layers with orthogonal
initialization; ``shared=True`` uses one trunk with both heads (the SLIM patent's shared network).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn


def layer(inputs: int, outputs: int, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """A linear layer with orthogonal weights (gain ``gain``) and constant bias, as in CleanRL's PPO."""
    linear = nn.Linear(inputs, outputs)
    nn.init.orthogonal_(linear.weight, gain)
    nn.init.constant_(linear.bias, bias)
    return linear


def mlp(inputs: int, hidden: Sequence[int]) -> nn.Sequential:
    """``inputs -> hidden[0] -> ... -> hidden[-1]``, tanh after every layer."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [layer(inputs, width), nn.Tanh()]
        inputs = width
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Policy over ``action_space`` (``Discrete``: categorical; ``Box``: diagonal Gaussian with a
    state-independent log std) and ``num_critics`` value heads.

    ``value(obs[B, D]) -> [B, K]``; ``act(obs)`` samples (no gradient);
    ``evaluate(obs, actions) -> (logprob[B], entropy[B], values[B, K])``.
    """

    def __init__(
        self,
        obs_dim: int,
        action_space: gym.Space,
        num_critics: int,
        hidden: Sequence[int] = (64, 64),
        shared: bool = False,
    ):
        super().__init__()
        if isinstance(action_space, gym.spaces.Discrete):
            self.discrete, self.action_dim = True, int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            self.discrete, self.action_dim = False, int(action_space.shape[0])
        else:
            raise TypeError(f"ActorCritic: action space {action_space} is not Discrete or a 1-D Box")
        self.num_critics, self.shared = num_critics, shared
        self.actor_body = mlp(obs_dim, hidden)
        self.critic_body = self.actor_body if shared else mlp(obs_dim, hidden)
        self.actor_head = layer(hidden[-1], self.action_dim, gain=0.01)
        self.critic_head = layer(hidden[-1], num_critics, gain=1.0)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.zeros(self.action_dim))

    def value(self, obs: Tensor) -> Tensor:
        """``[B, D] -> [B, K]`` one value per reward component."""
        return self.critic_head(self.critic_body(obs))

    def _heads(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Policy parameters (logits ``[B, A]`` or Gaussian mean ``[B, A]``) and values ``[B, K]``."""
        if self.shared:
            hidden = self.actor_body(obs)
            return self.actor_head(hidden), self.critic_head(hidden)
        return self.actor_head(self.actor_body(obs)), self.value(obs)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Sample actions: ``(actions[B] or [B, A], logprob[B], values[B, K])``.

        ``deterministic``: the most likely action (argmax / the Gaussian mean).
        """
        params, values = self._heads(obs)
        if self.discrete:
            logp_all = torch.log_softmax(params, dim=-1)
            if deterministic:
                actions = params.argmax(-1)
            else:  # Gumbel-max: one sample per row without building a distribution object
                actions = (logp_all - torch.empty_like(logp_all).exponential_().log()).argmax(-1)
            return actions, logp_all.gather(-1, actions[:, None]).squeeze(-1), values
        std = self.log_std.exp()
        actions = params if deterministic else params + std * torch.randn_like(params)
        return actions, _gaussian_logprob(actions, params, self.log_std), values

    def evaluate(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Log-probabilities ``[B]`` and entropies ``[B]`` of ``actions`` under the current policy, and values ``[B, K]``."""
        params, values = self._heads(obs)
        if self.discrete:
            logp_all = torch.log_softmax(params, dim=-1)
            logprob = logp_all.gather(-1, actions.long()[:, None]).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1)
            return logprob, entropy, values
        logprob = _gaussian_logprob(actions, params, self.log_std)
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + self.log_std).sum().expand(obs.shape[0])
        return logprob, entropy, values


def _gaussian_logprob(actions: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """Diagonal Gaussian ``log N(actions; mean, exp(log_std)^2)`` summed over the action axis -> ``[B]``."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def action_array(actions: Tensor, action_space: gym.Space) -> np.ndarray:
    """Policy output as what ``VectorEnv.step`` expects (int64 indices or float32 vectors)."""
    out = actions.cpu().numpy()
    if isinstance(action_space, gym.spaces.Discrete):
        return out.astype(np.int64) + int(action_space.start)
    return out.astype(np.float32)
