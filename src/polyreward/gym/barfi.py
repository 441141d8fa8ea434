"""BARFI: learned reward-combination weights by bi-level optimization (Gupta, Chandak, Jordan, Thomas,
da Silva, *Behavior Alignment via Reward Function Optimization*, NeurIPS 2023, arXiv 2310.19007).

The policy ``θ`` trains on a blended reward ``r_φ = r_p + Σ_k φ_k r_k`` (inner problem); ``φ`` is
tuned so that the trained policy's **primary** return ``J_p`` is as high as possible (outer problem):
``max_φ J_p(θ*(φ))`` with ``θ*(φ) = argmax_θ J_{r_φ}(θ)``.

The hypergradient here is a cheap one-step approximation, not the paper's implicit gradient: treat
the last inner PPO update as one SGD step on the blended surrogate, ``θ' = θ + α Σ_k w_k g_k(θ)`` with
``g_k(θ) = ∇_θ E_b[log π_θ(a|s) Â_k]`` (the policy gradient of component ``k``'s advantage), so
``dθ'/dφ_k = α g_k(θ)`` and, by the chain rule,

    dJ_p(θ') / dφ_k  ≈  α  g_p(θ') · g_k(θ),    g_p(θ') = ∇_θ' E_b[π_θ'(a|s) / π_old(a|s) · Â_p]

(``g_p(θ')`` is the importance-weighted primary policy gradient at the updated policy, estimated on
the same rollout). ``α`` is folded into the learning rate of an Adam step on ``φ``. Ignored: Adam,
clipping and several minibatch steps in the real inner update, the dependence of the advantage
normalization on ``φ``, and every inner step before the last (a truncated, horizon-1 hypergradient).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from polyreward.advantages import gae
from polyreward.config import ConfigError

if TYPE_CHECKING:
    from polyreward.gym.config import GymConfig
    from polyreward.gym.networks import ActorCritic
    from polyreward.gym.ppo import Rollout


def blend_rewards(rewards: Tensor, weights: Tensor) -> Tensor:
    """``rewards[..., K] @ weights[K] -> [...]``: ``r_φ = Σ_k w_k r_k`` (the primary's weight is fixed)."""
    return rewards @ weights.to(rewards.dtype)


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


def gradient_alignment(primary: Sequence[Tensor], components: Sequence[Sequence[Tensor]]) -> Tensor:
    """``[K]``: the dot product of the flattened ``primary`` gradient with each component gradient."""
    flat = torch.cat([g.reshape(-1) for g in primary])
    return torch.stack([flat @ torch.cat([g.reshape(-1) for g in grads]) for grads in components])


class RewardBlend:
    """Learnable weights ``φ`` over the non-primary reward components, and their BARFI outer update.

    ``weights[K]``: the primary's weight fixed (its ``config.weights`` entry, default 1.0), ``φ`` at the
    other components. Usage per PPO update: ``inner = blend.inner_gradients(...)`` before the policy
    update, ``blend.outer_step(..., inner)`` after it (see the module docstring).
    """

    def __init__(self, names: Sequence[str], primary: str, init: Sequence[float], lr: float = 0.05, clip: float = 10.0):
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
        self.phi = torch.nn.Parameter(self._fixed[self.learned].clone().clamp(-clip, clip))
        self.optimizer = torch.optim.Adam([self.phi], lr=lr)

    @classmethod
    def from_config(cls, config: GymConfig, names: Sequence[str], weights: Tensor) -> RewardBlend:
        if config.critic != "multi":
            raise ConfigError("barfi_primary: BARFI needs one advantage per component; set critic='multi'")
        return cls(names, config.barfi_primary, weights.tolist(), config.barfi_lr, config.barfi_clip)

    @property
    def weights(self) -> Tensor:
        """``[K]`` float32: the component weights the trainer uses now."""
        out = self._fixed.clone()
        out[self.learned] = self.phi.detach()
        return out

    def blend(self, rewards: Tensor) -> Tensor:
        """``rewards[..., K] -> [...]``: the training reward ``r_φ``."""
        return blend_rewards(rewards, self.weights)

    def component_advantages(self, rollout: Rollout, gamma: float, lam: float) -> Tensor:
        """``[T*E, K]``: per-component GAE advantages of ``rollout``, scaled by the std of their blend
        (the scale the scalarized PPO step sees), so that the hypergradient does not depend on the
        reward units."""
        per_critic, _ = gae(
            rollout.rewards, rollout.values, rollout.next_values, rollout.terminated, rollout.truncated, gamma, lam
        )
        flat = per_critic.reshape(-1, per_critic.shape[-1])
        return flat / (blend_rewards(flat, self.weights).std(correction=0) + 1e-8)

    def inner_gradients(self, model: ActorCritic, rollout: Rollout, adv: Tensor) -> list[list[Tensor]]:
        """``g_k(θ)`` for each learned component at the rollout's policy; ``adv[T*E, K]`` from
        :meth:`component_advantages`."""
        obs, actions, old_logp = _flat(rollout, next(model.parameters()).device)
        adv = adv.to(obs.device)
        return [policy_gradient(model, obs, actions, old_logp, adv[:, k]) for k in self.learned]

    def outer_step(self, model: ActorCritic, rollout: Rollout, adv: Tensor, inner: list[list[Tensor]]) -> dict[str, float]:
        """One Adam ascent step on ``φ`` along ``g_p(θ') · g_k(θ)``; returns ``barfi/hypergrad/<name>``."""
        obs, actions, old_logp = _flat(rollout, next(model.parameters()).device)
        primary = policy_gradient(model, obs, actions, old_logp, adv[:, self.index].to(obs.device))
        hyper = gradient_alignment(primary, inner).cpu()
        self.optimizer.zero_grad(set_to_none=True)
        self.phi.grad = -hyper  # Adam minimizes; the outer problem maximizes J_p
        self.optimizer.step()
        with torch.no_grad():
            self.phi.clamp_(-self.clip, self.clip)
        return {f"barfi/hypergrad/{self.names[k]}": float(h) for k, h in zip(self.learned, hyper, strict=True)}

    def metrics(self) -> dict[str, float]:
        """``barfi/weight/<name>`` of each learned component."""
        return {f"barfi/weight/{self.names[k]}": float(w) for k, w in zip(self.learned, self.phi.detach(), strict=True)}

    def state_dict(self) -> dict[str, Any]:
        return {"phi": self.phi.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.phi.copy_(state["phi"])
        self.optimizer.load_state_dict(state["optimizer"])


def _flat(rollout: Rollout, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    n = rollout.logprobs.numel()
    actions = rollout.actions.reshape(n, *rollout.actions.shape[2:])
    return rollout.obs.reshape(n, -1).to(device), actions.to(device), rollout.logprobs.reshape(n).to(device)
