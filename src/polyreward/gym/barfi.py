"""BARFI: learned reward-combination weights by bi-level optimization (Gupta, Chandak, Jordan, Thomas,
da Silva, *Behavior Alignment via Reward Function Optimization*, NeurIPS 2023, arXiv 2310.19007; the
authors' code: github.com/Dhawgupta/gupta2023behavior).

The policy ``θ`` trains on a blend of the components (inner problem) and the blend's parameters ``ψ``
are tuned so that the trained policy's **primary** return ``J_p`` is as high as possible (outer
problem): ``max_ψ J_p(θ*(ψ))`` with ``θ*(ψ) = argmax_θ J_φ(θ)``. The weights ``φ_k`` of the learned
(non-primary) components are either **global** (``ψ = φ[L]``, the same at every state) or **per state**
(``φ_ψ(s)``, a small network of the observation). The blended advantage of sample ``b`` is
``A_b = w_p A_p,b + Σ_k φ_k(s_b) A_k,b`` (per-component critics; the normalization ``critic_norm``
applies as for fixed weights); with a global ``φ`` this is ``A_{r_φ}`` for ``r_φ = w_p r_p + Σ_k φ_k r_k``.

The hypergradient is a cheap one-step approximation: treat the last inner PPO update as one SGD step
on the blended surrogate, ``θ' = θ + α ∇_θ mean_b(ρ_b(θ) A_b(ψ))`` with ``ρ_b = π_θ(a_b|s_b)/π_old``.
Then, by the chain rule,

    dJ_p(θ')/dψ  ≈  α ∂/∂ψ [ g_p(θ') · ∇_θ mean_b(ρ_b(θ) A_b(ψ)) ]  =  α ∂/∂ψ mean_b( c_b Σ_k φ_k(s_b; ψ) Â_k,b ),
    c_b = ∇_θ ρ_b(θ) · g_p(θ'),    g_p(θ') = ∇_θ' mean_b(ρ_b(θ') Â_p,b)

(``c_b``: how much sample ``b``'s ratio gradient at ``θ`` agrees with the primary policy gradient after
the update; one reverse-over-reverse pass gives all of them). For a global ``φ`` the ``ψ``-gradient is
``α g_k(θ) · g_p(θ')`` with ``g_k`` component ``k``'s policy gradient. This is the authors' implicit
(Neumann-series) hypergradient truncated to its first term: their code ascends
``∂/∂ψ [∇_θ J_φ · Σ_{j≤n} (I + α ∇²_θ J_φ)^j ∇_θ J_p]``, which for ``n = 0`` is the same product.
``α`` is folded into the learning rate of an Adam step on ``ψ``. Ignored: Adam, clipping and several
minibatch steps in the real inner update, the dependence of the advantage normalization on ``ψ``,
and every inner step before the last (a truncated, horizon-1 hypergradient).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from polyreward.advantages import AdvantageResult, gae, multi_critic_advantage
from polyreward.config import ConfigError
from polyreward.gym.networks import mlp

if TYPE_CHECKING:
    from polyreward.gym.config import GymConfig
    from polyreward.gym.networks import ActorCritic
    from polyreward.gym.ppo import Rollout


def blend_rewards(rewards: Tensor, weights: Tensor) -> Tensor:
    """``rewards[..., K]`` blended with ``weights[K]`` (or per sample, ``weights[..., K]``) ``-> [...]``:
    ``r_φ = Σ_k w_k r_k`` (the primary's weight is fixed)."""
    return (rewards * weights.to(rewards.dtype)).sum(-1)


def policy_gradient(model: ActorCritic, obs: Tensor, actions: Tensor, old_logp: Tensor, adv: Tensor) -> list[Tensor]:
    """``∇_θ mean_B(exp(log π_θ(a|s) - old_logp) · adv)`` over ``model``'s parameters (zeros where unused).

    ``obs[B, D]``, ``actions[B(, A)]``, ``old_logp[B]``, ``adv[B]``; at ``θ = θ_old`` this is the plain
    policy gradient ``mean_B(∇ log π · adv)``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    logp, _, _ = model.evaluate(obs, actions)
    objective = ((logp - old_logp).exp() * adv).mean()
    grads = torch.autograd.grad(objective, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def sample_alignment(
    model: ActorCritic,
    params: dict[str, Tensor],
    obs: Tensor,
    actions: Tensor,
    old_logp: Tensor,
    direction: Sequence[Tensor],
) -> Tensor:
    """``c[B]``: ``c_b = ∇_θ ρ_b(θ) · direction`` at the parameters ``params`` (``{name: tensor}`` for
    every trainable parameter of ``model``, in ``model.parameters()`` order), ``ρ_b = exp(log π_θ(a_b|s_b)
    - old_logp_b)``. One reverse-over-reverse pass: ``c = ∂/∂z [∇_θ Σ_b z_b ρ_b(θ) · direction]``."""
    theta = {name: p.detach().requires_grad_() for name, p in params.items()}
    z = torch.zeros(obs.shape[0], device=obs.device, requires_grad=True)
    logp = functional_call(_LogProb(model), {f"model.{k}": v for k, v in theta.items()}, (obs, actions))
    grads = torch.autograd.grad(
        (z * (logp - old_logp).exp()).sum(), list(theta.values()), create_graph=True, allow_unused=True
    )
    dot = sum((g * v).sum() for g, v in zip(grads, direction, strict=True) if g is not None)
    return torch.autograd.grad(dot, z)[0]


class _LogProb(nn.Module):
    """``forward(obs, actions) = model.evaluate(obs, actions)[0]``, for ``functional_call``."""

    def __init__(self, model: ActorCritic):
        super().__init__()
        self.model = model

    def forward(self, obs: Tensor, actions: Tensor) -> Tensor:
        return self.model.evaluate(obs, actions)[0]


class GlobalWeights(nn.Module):
    """``φ[L]``, the same at every state: ``forward(obs[B, D]) -> [B, L]``; kept in ``[-clip, clip]``."""

    def __init__(self, init: Tensor, clip: float):
        super().__init__()
        self.clip = clip
        self.phi = nn.Parameter(init.clone().clamp(-clip, clip))

    def forward(self, obs: Tensor) -> Tensor:
        return self.phi.expand(obs.shape[0], -1)

    def project(self) -> None:
        with torch.no_grad():
            self.phi.clamp_(-self.clip, self.clip)


class StateWeights(nn.Module):
    """``φ_ψ(s) = clamp(init + W h_ψ(s), -clip, clip)``: ``forward(obs[B, D]) -> [B, L]``. ``h_ψ`` is a tanh
    MLP (``hidden`` widths; ``[]``: the observation itself, so ``φ`` is linear in it, like the authors'
    gridworld reward network, and tabular on one-hot states). ``W`` starts at zero, so ``φ`` starts at
    ``init`` at every state, and has no bias: a bias shared by all states would couple their weights
    (Adam moves it by about the learning rate whichever states its gradient comes from)."""

    def __init__(self, obs_dim: int, init: Tensor, hidden: Sequence[int], clip: float):
        super().__init__()
        self.clip = clip
        self.register_buffer("init", init.clone())
        self.body = mlp(obs_dim, hidden)
        self.head = nn.Linear(hidden[-1] if hidden else obs_dim, len(init), bias=False)
        nn.init.zeros_(self.head.weight)

    def forward(self, obs: Tensor) -> Tensor:
        return (self.init + self.head(self.body(obs))).clamp(-self.clip, self.clip)

    def project(self) -> None:
        """Nothing to do: ``forward`` clamps."""


class RewardBlend:
    """Learnable weights ``φ`` over the non-primary reward components, and their BARFI outer update.

    ``weight_fn``: :class:`GlobalWeights` or :class:`StateWeights`. Usage per PPO update:
    :meth:`reweight` the advantages, ``before = blend.snapshot(model)`` before the policy update and
    ``blend.outer_step(model, rollout, before, gamma, lam)`` after it (see the module docstring).
    """

    def __init__(
        self,
        names: Sequence[str],
        primary: str,
        init: Sequence[float],
        lr: float = 0.05,
        clip: float = 10.0,
        obs_dim: int | None = None,
        hidden: Sequence[int] = (32,),
    ):
        """``obs_dim``: None for global weights, else the observation size of per-state ``φ_ψ(s)``."""
        names = list(names)
        if primary not in names:
            raise ConfigError(f"barfi_primary: {primary!r} is not a reward component; the components are {names}")
        if len(names) < 2:
            raise ConfigError(f"barfi_primary: BARFI needs a component besides {primary!r} to weight; got {names}")
        if len(init) != len(names):
            raise ValueError(f"RewardBlend: {len(init)} initial weights for components {names}")
        self.names, self.primary, self.clip = names, primary, clip
        self.index = names.index(primary)
        self.learned = [k for k in range(len(names)) if k != self.index]
        self._fixed = torch.tensor([float(w) for w in init], dtype=torch.float32)
        start = self._fixed[self.learned]
        self.per_state = obs_dim is not None
        self.weight_fn = GlobalWeights(start, clip) if obs_dim is None else StateWeights(obs_dim, start, hidden, clip)
        self.optimizer = torch.optim.Adam(self.weight_fn.parameters(), lr=lr)
        self._mean = start.clamp(-clip, clip)  # per-state: φ's mean over the last reweighted rollout

    @classmethod
    def from_config(cls, config: GymConfig, names: Sequence[str], weights: Tensor, obs_dim: int) -> RewardBlend:
        if config.critic != "multi":
            raise ConfigError("barfi_primary: BARFI needs one advantage per component; set critic='multi'")
        per_state = obs_dim if config.barfi_weights == "state" else None
        hidden = config.barfi_hidden_sizes
        return cls(names, config.barfi_primary, weights.tolist(), config.barfi_lr, config.barfi_clip, per_state, hidden)

    @property
    def phi(self) -> nn.Parameter:
        """Global weights' ``φ[L]`` (an error for per-state weights, which are a network)."""
        if self.per_state:
            raise AttributeError("RewardBlend.phi: per-state weights have no single phi; call sample_weights(obs)")
        return self.weight_fn.phi

    @property
    def weights(self) -> Tensor:
        """``[K]`` float32: the component weights now (per state: their mean over the last reweighted rollout)."""
        out = self._fixed.clone()
        out[self.learned] = self._mean if self.per_state else self.weight_fn.phi.detach()
        return out

    def sample_weights(self, obs: Tensor) -> Tensor:
        """``obs[..., D] -> [..., K]``: every component's weight at each state (no gradient)."""
        flat = obs.reshape(-1, obs.shape[-1])
        out = self._fixed.expand(flat.shape[0], -1).clone()
        with torch.no_grad():
            out[:, self.learned] = self.weight_fn(flat.float())
        return out.reshape(*obs.shape[:-1], -1)

    def blend(self, rewards: Tensor, obs: Tensor | None = None) -> Tensor:
        """``rewards[..., K] -> [...]``: the training reward ``r_φ`` (per-state weights need ``obs[..., D]``)."""
        return blend_rewards(rewards, self.weights if obs is None else self.sample_weights(obs))

    def reweight(self, result: AdvantageResult, obs: Tensor, norm: str) -> AdvantageResult:
        """The multi-critic advantages recombined with each sample's weights: ``A = Σ_k φ_k(s) Â_k`` after
        ``norm`` (``critic_norm``); ``result.extras["per_critic"][T, E, K]``, ``obs[T, E, D]``."""
        weights = self.sample_weights(obs).to(result.advantages.device)
        if self.per_state:
            self._mean = weights.reshape(-1, len(self.names))[:, self.learned].mean(0).cpu()
        parts = multi_critic_advantage(result.extras["per_critic"], weights, norm)
        return AdvantageResult(advantages=parts.sum(-1), per_component=parts, level=result.level, extras=result.extras)

    def component_advantages(self, rollout: Rollout, gamma: float, lam: float) -> Tensor:
        """``[T*E, K]``: per-component GAE advantages of ``rollout``, scaled by the std of their blend
        (the scale the scalarized PPO step sees), so that the hypergradient does not depend on the
        reward units."""
        per_critic, _ = gae(
            rollout.rewards, rollout.values, rollout.next_values, rollout.terminated, rollout.truncated, gamma, lam
        )
        flat = per_critic.reshape(-1, per_critic.shape[-1])
        weights = self.sample_weights(rollout.obs).reshape(flat.shape)
        return flat / (blend_rewards(flat, weights).std(correction=0) + 1e-8)

    @staticmethod
    def snapshot(model: ActorCritic) -> dict[str, Tensor]:
        """``θ`` before the inner update: a detached copy of ``model``'s trainable parameters."""
        return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    def outer_step(
        self, model: ActorCritic, rollout: Rollout, before: dict[str, Tensor], gamma: float, lam: float
    ) -> dict[str, float]:
        """One Adam ascent step on ``ψ`` along ``∂/∂ψ mean_b(c_b Σ_k φ_k(s_b) Â_k,b)``, ``before``: the
        :meth:`snapshot` taken before the update. Returns ``barfi/hypergrad/<name>`` = ``mean_b(c_b Â_k,b)``,
        the hypergradient of a uniform shift of ``φ_k`` (for global weights: ``g_k(θ) · g_p(θ')``)."""
        device = next(model.parameters()).device
        obs, actions, old_logp = _flat(rollout, device)
        adv = self.component_advantages(rollout, gamma, lam).to(device)
        primary = policy_gradient(model, obs, actions, old_logp, adv[:, self.index])
        align = sample_alignment(model, before, obs, actions, old_logp, primary).detach().cpu()
        hyper = self.ascend(obs.cpu(), adv[:, self.learned].cpu(), align)
        return {f"barfi/hypergrad/{self.names[k]}": float(h) for k, h in zip(self.learned, hyper, strict=True)}

    def ascend(self, obs: Tensor, adv: Tensor, align: Tensor) -> Tensor:
        """One Adam step raising ``mean_b(align_b Σ_k φ_k(obs_b) adv_b,k)`` (``obs[B, D]``, ``adv[B, L]``,
        ``align[B]``); returns its gradient per uniform shift of each ``φ_k``, ``[L]``."""
        objective = (align[:, None] * adv * self.weight_fn(obs.float())).mean(0).sum()
        self.optimizer.zero_grad(set_to_none=True)
        (-objective).backward()  # Adam minimizes; the outer problem maximizes J_p
        self.optimizer.step()
        self.weight_fn.project()
        return (align[:, None] * adv).mean(0)

    def metrics(self) -> dict[str, float]:
        """``barfi/weight/<name>`` of each learned component (per state: the mean over the last rollout)."""
        weights = self.weights
        return {f"barfi/weight/{self.names[k]}": float(weights[k]) for k in self.learned}

    def state_dict(self) -> dict[str, Any]:
        return {
            "mode": "state" if self.per_state else "global",
            "weights": {k: v.clone() for k, v in self.weight_fn.state_dict().items()},
            "mean": self._mean.clone(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mode = state.get("mode", "global")  # checkpoints before per-state weights hold {"phi", "optimizer"}
        if mode != ("state" if self.per_state else "global"):
            raise ConfigError(f"barfi_weights: the checkpoint holds {mode!r} BARFI weights; the config asks for others")
        self.weight_fn.load_state_dict(state.get("weights", {"phi": state.get("phi")}))
        self._mean = state.get("mean", self._mean)
        self.optimizer.load_state_dict(state["optimizer"])


def _flat(rollout: Rollout, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    n = rollout.logprobs.numel()
    actions = rollout.actions.reshape(n, *rollout.actions.shape[2:])
    return rollout.obs.reshape(n, -1).to(device), actions.to(device), rollout.logprobs.reshape(n).to(device)
