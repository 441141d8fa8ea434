"""MLP actor-critic with one value head per reward component (SLIM, arXiv 2402.00823).

Shapes: ``B`` observations of ``D`` features (flattened by :func:`polyreward.gym.envs.make_env`),
``K`` critics, ``A`` discrete actions or an ``A``-dimensional continuous action.
The default layout is CleanRL's: separate actor and critic MLPs of tanh layers with orthogonal
initialization; ``shared=True`` uses one trunk with both heads (the SLIM patent's shared network).
``moe=MoESpec(...)`` replaces each trunk by a top-k Mixture-of-Experts (:class:`MoEMLP`, ScaleZero-style).
"""

from __future__ import annotations

import dataclasses
import itertools
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


# ---------------------------------------------------------------- Mixture-of-Experts trunk
def topk_gates(logits: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k routing: ``(gates[B, k], index[B, k])`` from router ``logits[B, E]``; the gates are the
    softmax over the k largest logits only (``softmax_TopK(g(x))``, Shazeer et al. 2017)."""
    top, index = logits.topk(k, dim=-1)
    return top.softmax(-1), index


def moe_combine(expert_out: Tensor, gates: Tensor, index: Tensor) -> Tensor:
    """``y[B, O] = sum_j gates[B, j] * expert_out[B, index[B, j], O]`` for ``expert_out[B, E, O]``."""
    picked = expert_out.gather(1, index[..., None].expand(-1, -1, expert_out.shape[-1]))
    return (gates[..., None] * picked).sum(1)


def switch_balance_loss(logits: Tensor, index: Tensor) -> Tensor:
    """Load-balancing auxiliary loss ``E * sum_i f_i * P_i`` (Switch Transformer, Fedus et al. 2022,
    JMLR 23, arXiv 2101.03961, eq. 4-6) -> scalar.

    ``logits[B, E]``: router logits; ``index[B, k]``: the chosen experts. ``f_i``: the fraction of the
    ``B * k`` routing slots sent to expert i (no gradient); ``P_i``: the mean router probability
    ``softmax(logits)_i`` over the batch. Perfectly balanced routing gives 1.0, all to one expert E.
    """
    num_experts = logits.shape[-1]
    fraction = nn.functional.one_hot(index, num_experts).float().mean((0, 1))
    probability = logits.softmax(-1).mean(0)
    return num_experts * (fraction * probability).sum()


class StackedMLP(nn.Module):
    """``n`` independent MLPs ``inputs -> hidden... -> outputs`` (tanh between layers, linear output)
    evaluated in one batched matmul per layer: ``x[B, I] -> [B, n, O]``."""

    def __init__(self, n: int, inputs: int, hidden: Sequence[int], outputs: int):
        super().__init__()
        widths = [inputs, *hidden, outputs]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(widths):
            weight = torch.empty(n, fan_in, fan_out)
            for w in weight:  # orthogonal per member, as :func:`layer`
                nn.init.orthogonal_(w, math.sqrt(2))
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(torch.zeros(n, 1, fan_out)))

    def forward(self, x: Tensor) -> Tensor:
        h = x  # [B, I], broadcast against weight [n, I, H] to [n, B, H]
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.matmul(h, weight) + bias  # broadcasting matmul; baddbmm was ~100x slower on CPU here
            if i < len(self.weights) - 1:
                h = torch.tanh(h)
        return h.transpose(0, 1)


class MoEMLP(nn.Module):
    """Top-k Mixture-of-Experts ``y = sum_{i in TopK(g(x))} softmax_TopK(g(x))_i E_i(x) [+ S(x)]``
    (the MoE feed-forward of ScaleZero, Pu et al. arXiv 2509.07945; Shazeer et al. 2017), ``x[B, in]
    -> y[B, out]``.

    ``g``: a linear router; ``E_i``: ``n_experts`` MLPs ``in -> hidden... -> out`` (linear output);
    ``S``: an always-on shared expert of the same shape when ``shared`` (DeepSeekMoE, Dai et al.
    2024, arXiv 2401.06066). Every expert is evaluated (dense compute; cheap at RL widths), only the
    chosen k are mixed, so unchosen experts get no gradient from ``y``. ``balance_loss`` holds the
    :func:`switch_balance_loss` of the latest forward pass.
    """

    def __init__(
        self, inputs: int, outputs: int, n_experts: int = 4, k: int = 2, shared: bool = True, hidden: Sequence[int] = ()
    ):
        super().__init__()
        if not 1 <= k <= n_experts:
            raise ValueError(f"MoEMLP: k must be in [1, n_experts={n_experts}], got {k}")
        self.k = k
        self.router = layer(inputs, n_experts, gain=1.0)
        self.experts = StackedMLP(n_experts, inputs, hidden, outputs)
        self.shared = StackedMLP(1, inputs, hidden, outputs) if shared else None
        self.balance_loss = torch.zeros(())

    def forward(self, x: Tensor) -> Tensor:
        logits = self.router(x)
        gates, index = topk_gates(logits, self.k)
        y = moe_combine(self.experts(x), gates, index)
        if self.shared is not None:
            y = y + self.shared(x)[:, 0]
        self.balance_loss = switch_balance_loss(logits, index)
        return y


@dataclasses.dataclass(frozen=True)
class MoESpec:
    """The MoE trunk of :class:`ActorCritic`: ``experts`` MLPs, ``top_k`` mixed per input, an
    optional shared expert."""

    experts: int = 4
    top_k: int = 2
    shared_expert: bool = True


def trunk(obs_dim: int, hidden: Sequence[int], moe: MoESpec | None) -> nn.Module:
    """``[B, D] -> [B, hidden[-1]]``: the tanh MLP, or a :class:`MoEMLP` whose experts have the layers
    ``hidden[:-1]``, followed by tanh (so the heads see the same bounded features)."""
    if moe is None:
        return mlp(obs_dim, hidden)
    body = MoEMLP(obs_dim, hidden[-1], moe.experts, moe.top_k, moe.shared_expert, hidden=hidden[:-1])
    return nn.Sequential(body, nn.Tanh())


class ActorCritic(nn.Module):
    """Policy over ``action_space`` (``Discrete``: categorical; ``Box``: diagonal Gaussian with a
    state-independent log std) and ``num_critics`` value heads.

    ``value(obs[B, D]) -> [B, K]``; ``features(obs) -> [B, H]`` (the critic trunk); ``act(obs)`` samples
    (no gradient); ``evaluate(obs, actions) -> (logprob[B], entropy[B], values[B, K])``.
    """

    def __init__(
        self,
        obs_dim: int,
        action_space: gym.Space,
        num_critics: int,
        hidden: Sequence[int] = (64, 64),
        shared: bool = False,
        moe: MoESpec | None = None,
    ):
        super().__init__()
        if isinstance(action_space, gym.spaces.Discrete):
            self.discrete, self.action_dim = True, int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            self.discrete, self.action_dim = False, int(action_space.shape[0])
        else:
            raise TypeError(f"ActorCritic: action space {action_space} is not Discrete or a 1-D Box")
        self.num_critics, self.shared = num_critics, shared
        self.actor_body = trunk(obs_dim, hidden, moe)
        self.critic_body = self.actor_body if shared else trunk(obs_dim, hidden, moe)
        self.actor_head = layer(hidden[-1], self.action_dim, gain=0.01)
        self.critic_head = layer(hidden[-1], num_critics, gain=1.0)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.zeros(self.action_dim))

    def balance_loss(self) -> Tensor:
        """Sum of the MoE trunks' :func:`switch_balance_loss` from the latest forward pass (0 without MoE)."""
        losses = [m.balance_loss for m in self.modules() if isinstance(m, MoEMLP)]
        return torch.stack(losses).sum() if losses else torch.zeros(())

    def value(self, obs: Tensor) -> Tensor:
        """``[B, D] -> [B, K]`` one value per reward component."""
        return self.critic_head(self.features(obs))

    def features(self, obs: Tensor) -> Tensor:
        """``[B, D] -> [B, H]`` (``H = hidden[-1]``): the critic trunk's output, which the value heads
        read; with ``shared=True`` the one trunk's, which the policy head reads too."""
        return self.critic_body(obs)

    def _heads(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Policy parameters (logits ``[B, A]`` or Gaussian mean ``[B, A]``), values ``[B, K]`` and the
        critic trunk's :meth:`features` ``[B, H]``, from one pass of each trunk."""
        if self.shared:
            hidden = self.actor_body(obs)
            return self.actor_head(hidden), self.critic_head(hidden), hidden
        params, hidden = self.actor_head(self.actor_body(obs)), self.critic_body(obs)
        return params, self.critic_head(hidden), hidden

    @torch.no_grad()
    def action_probs(self, obs: Tensor) -> Tensor:
        """``[B, D] -> [B, A]`` the categorical policy's probabilities (discrete actions only)."""
        if not self.discrete:
            raise TypeError("ActorCritic.action_probs: the policy is a Gaussian over a continuous action")
        return torch.softmax(self.actor_head(self.actor_body(obs)), dim=-1)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Sample actions: ``(actions[B] or [B, A], logprob[B], values[B, K])``.

        ``deterministic``: the most likely action (argmax / the Gaussian mean).
        """
        params, values, _ = self._heads(obs)
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
        return self.evaluate_features(obs, actions)[:3]

    def evaluate_features(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`evaluate` plus the :meth:`features` ``[B, H]`` of the same pass (with gradient), for an
        auxiliary loss on the trunk without a second forward pass."""
        params, values, hidden = self._heads(obs)
        if self.discrete:
            logp_all = torch.log_softmax(params, dim=-1)
            logprob = logp_all.gather(-1, actions.long()[:, None]).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1)
            return logprob, entropy, values, hidden
        logprob = _gaussian_logprob(actions, params, self.log_std)
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + self.log_std).sum().expand(obs.shape[0])
        return logprob, entropy, values, hidden


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
