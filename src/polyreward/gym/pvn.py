"""Proto-Value Networks: a successor-measure auxiliary loss (Farebrother et al., ICLR 2023, arXiv 2304.12567).

Task ``i`` pays the indicator reward ``1[s' ∈ Σ_i]`` of a random set ``Σ_i`` of states. Head ``i``
learns ``ψ_i(s, a) ≈ E[sum_t γ^t 1[S_{t+1} ∈ Σ_i] | S_0 = s, A_0 = a]`` by TD; the shared trunk that
feeds all heads is the representation that the auxiliary loss shapes.

Shapes: ``B`` transitions, ``D`` observation features, ``A`` discrete actions, ``M`` tasks, ``H`` trunk
features. The pieces:

- :class:`RandomIndicators` / :func:`indicator_tasks`: ``obs[B, D] -> [B, M]`` in ``{0, 1}``.
- :func:`pvn_targets`: ``1[s' ∈ Σ_i] + γ (1 - done) ψ_i(s', a*)`` -> ``[B, M]`` (no gradient).
- :func:`pvn_td_loss`: ``0.5 · mean_{B, M} (target - ψ_i(s, a))^2`` -> scalar.
- :class:`PVNHead`: ``features[B, H] -> ψ[B, A, M]``, one linear map per task.

What follows the paper and what follows the released code (``google-research/pvn``) is listed in
``docs/gym-auxiliary.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from polyreward.gym.config import GymConfig

Rule = Literal["max", "policy"]


class RandomIndicators(nn.Module):
    """``M`` frozen random binary functions of the state: ``1[f_i(z) > q_i]``.

    ``z = (obs - mean) / std`` is the standardized observation, ``f = W_2 tanh(W_1 z + b_1)`` a random
    two-layer network with Gaussian weights (variance ``1 / fan_in``) drawn from
    ``torch.Generator().manual_seed(seed)``, and ``q_i`` the ``1 - sparsity`` quantile of ``f_i`` over a
    reference batch given to :meth:`calibrate`; so about a fraction ``sparsity`` of reference states is
    in each set ``Σ_i``. Nothing here is trained: weights, ``mean``, ``std`` and ``q`` are buffers.

    This follows the paper's description ("a random network thresholded to a fixed sparsity"); the
    architecture and the calibration are ours. The released code uses random Nature-DQN encoders
    whose output bias is fitted by quantile regression to a target proportion of 0.01.
    """

    def __init__(self, obs_dim: int, num_tasks: int, seed: int, sparsity: float = 0.01, hidden: int = 64):
        super().__init__()
        if obs_dim < 1 or num_tasks < 1 or hidden < 1:
            raise ValueError(f"RandomIndicators: obs_dim={obs_dim}, num_tasks={num_tasks}, hidden={hidden} must all be >= 1")
        if not 0.0 < sparsity < 1.0:
            raise ValueError(f"RandomIndicators: sparsity={sparsity} must be in (0, 1)")
        self.sparsity = float(sparsity)
        gen = torch.Generator().manual_seed(int(seed))
        self.register_buffer("w1", torch.randn(obs_dim, hidden, generator=gen) / obs_dim**0.5)
        self.register_buffer("b1", torch.randn(hidden, generator=gen) * 0.5)
        self.register_buffer("w2", torch.randn(hidden, num_tasks, generator=gen) / hidden**0.5)
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("std", torch.ones(obs_dim))
        self.register_buffer("threshold", torch.full((num_tasks,), float("nan")))

    @torch.no_grad()
    def pre_threshold(self, obs: Tensor) -> Tensor:
        """``obs[B, D] -> [B, M]`` the random network's outputs before thresholding."""
        z = (obs.float() - self.mean) / self.std
        return torch.tanh(z @ self.w1 + self.b1) @ self.w2

    @torch.no_grad()
    def calibrate(self, reference: Tensor) -> RandomIndicators:
        """Fix the input standardization and each task's threshold from ``reference[N, D]`` (N >= 2).

        Call once (e.g. on the first rollout's observations) and keep the module frozen afterwards:
        the sets ``Σ_i`` must not move while ``ψ`` learns them.
        """
        if reference.ndim != 2 or reference.shape[0] < 2 or reference.shape[1] != self.w1.shape[0]:
            raise ValueError(
                f"RandomIndicators.calibrate: expected reference[N >= 2, {self.w1.shape[0]}], got {tuple(reference.shape)}"
            )
        reference = reference.float()
        self.mean.copy_(reference.mean(0))
        self.std.copy_(reference.std(0).clamp_min(1e-6))
        self.threshold.copy_(torch.quantile(self.pre_threshold(reference), 1.0 - self.sparsity, dim=0))
        return self

    @torch.no_grad()
    def forward(self, obs: Tensor) -> Tensor:
        """``obs[B, D] -> [B, M]`` float ``{0, 1}``: ``1[obs ∈ Σ_i]``."""
        if torch.isnan(self.threshold).any():
            raise RuntimeError("RandomIndicators: call calibrate(reference_obs) before computing indicators")
        return (self.pre_threshold(obs) > self.threshold).float()


def indicator_tasks(
    obs: Tensor, num_tasks: int, seed: int, sparsity: float = 0.01, reference: Tensor | None = None
) -> Tensor:
    """``obs[B, D] -> [B, M]`` random indicator rewards ``1[obs ∈ Σ_i]`` (see :class:`RandomIndicators`).

    Deterministic given ``seed`` and the calibration batch ``reference[N, D]`` (default: ``obs`` itself,
    so each column then holds about ``sparsity · B`` ones). For training, build one
    :class:`RandomIndicators`, calibrate it once and reuse it, so that a state's labels do not depend on
    the batch it appears in.
    """
    indicators = RandomIndicators(obs.shape[-1], num_tasks, seed, sparsity).to(obs.device)
    return indicators.calibrate(obs if reference is None else reference)(obs)


def pvn_targets(
    ind_next: Tensor,
    psi_next: Tensor,
    gamma: float,
    rule: Rule = "max",
    done: Tensor | None = None,
    next_probs: Tensor | None = None,
) -> Tensor:
    """TD targets ``y_i = 1[s' ∈ Σ_i] + γ (1 - done) ψ_i(s', a*)`` -> ``[B, M]``, detached.

    ``ind_next[B, M]`` indicator rewards of ``s'``; ``psi_next[B, A, M]`` predictions at ``s'`` (online
    or target network); ``done[B]`` bool, true termination only (not truncation: there ``s'`` is the
    true final observation and the target bootstraps). ``rule="max"``: ``max_a ψ_i(s', a)`` per task
    (off-policy, greedy per task); ``rule="policy"``: ``sum_a π(a|s') ψ_i(s', a)`` with
    ``next_probs[B, A]`` (``None``: uniform, i.e. the mean over actions that the released code uses).
    """
    if psi_next.ndim != 3 or ind_next.shape != (psi_next.shape[0], psi_next.shape[2]):
        raise ValueError(
            f"pvn_targets: expected ind_next[B, M] and psi_next[B, A, M], got {tuple(ind_next.shape)} and "
            f"{tuple(psi_next.shape)}"
        )
    psi_next = psi_next.detach()
    if rule == "max":
        bootstrap = psi_next.max(dim=1).values
    elif rule == "policy":
        if next_probs is None:
            bootstrap = psi_next.mean(dim=1)
        else:
            if next_probs.shape != psi_next.shape[:2]:
                raise ValueError(
                    f"pvn_targets: next_probs {tuple(next_probs.shape)} is not [B, A] = {tuple(psi_next.shape[:2])}"
                )
            bootstrap = torch.einsum("ba,bam->bm", next_probs.detach().to(psi_next.dtype), psi_next)
    else:
        raise ValueError(f"pvn_targets: rule={rule!r} is not one of ['max', 'policy']")
    if done is not None:
        bootstrap = bootstrap * (~done.bool()).to(bootstrap.dtype)[:, None]
    return (ind_next.to(bootstrap.dtype) + gamma * bootstrap).detach()


def pvn_td_loss(
    psi: Tensor,
    actions: Tensor,
    ind_next: Tensor,
    psi_next: Tensor,
    gamma: float,
    rule: Rule = "max",
    done: Tensor | None = None,
    next_probs: Tensor | None = None,
) -> Tensor:
    """The PVN auxiliary loss ``0.5 · mean_{b, i} (y_{b,i} - ψ_i(s_b, a_b))^2`` -> scalar.

    ``psi[B, A, M]`` online predictions at ``s``; ``actions[B]`` the actions taken (indices); the
    targets ``y[B, M]`` come from :func:`pvn_targets` (same ``ind_next``, ``psi_next``, ``gamma``,
    ``rule``, ``done``, ``next_probs``) and carry no gradient. The ``0.5`` and the mean over batch and
    tasks follow the released code (``optax.l2_loss`` averaged).
    """
    if psi.ndim != 3 or actions.shape != psi.shape[:1]:
        raise ValueError(
            f"pvn_td_loss: expected psi[B, A, M] and actions[B], got {tuple(psi.shape)} and {tuple(actions.shape)}"
        )
    if psi_next.shape != psi.shape:
        raise ValueError(f"pvn_td_loss: psi_next {tuple(psi_next.shape)} differs from psi {tuple(psi.shape)}")
    index = actions.long().view(-1, 1, 1).expand(-1, 1, psi.shape[2])
    chosen = psi.gather(1, index).squeeze(1)
    targets = pvn_targets(ind_next, psi_next, gamma, rule, done, next_probs)
    return 0.5 * (targets - chosen).pow(2).mean()


class PVNHead(nn.Module):
    """``features[B, H] -> ψ[B, A, M]``: one linear map per task from a shared trunk's features.

    The trunk (e.g. ``ActorCritic.critic_body``) receives the auxiliary gradient; in the paper's
    protocol the trunk is later frozen and read by a linear head. For continuous actions use
    ``num_actions=1``, ``actions = 0`` and ``rule="policy"``: ``ψ`` is then the successor measure of the
    behaviour policy.
    """

    def __init__(self, hidden_dim: int, num_actions: int, num_tasks: int):
        super().__init__()
        self.num_actions, self.num_tasks = num_actions, num_tasks
        self.linear = nn.Linear(hidden_dim, num_actions * num_tasks)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: Tensor) -> Tensor:
        """``[B, H] -> [B, A, M]``."""
        return self.linear(features).view(features.shape[0], self.num_actions, self.num_tasks)


class PVNAuxiliary(nn.Module):
    """The PVN loss as an auxiliary loss of a PPO actor-critic: frozen :class:`RandomIndicators` and a
    :class:`PVNHead` on the critic trunk's features (``ActorCritic.features``).

    ``calibrate(obs)`` once, on the first rollout's observations; then, per minibatch,
    ``loss(model, features, actions, next_obs, terminated)`` with the ``features[B, H]`` of the PPO
    forward pass (with gradient, so the trunk learns from the loss). ``ψ(s', ·)`` comes from the
    online trunk and head without gradient (the released code uses a soft-updated target network).
    Continuous actions: one ``ψ`` column (``num_actions=1``, action 0), the behaviour policy's
    successor measure. ``state_dict`` holds the indicators' buffers and the head.
    """

    def __init__(
        self,
        obs_dim: int,
        hidden_dim: int,
        num_actions: int,
        num_tasks: int,
        gamma: float,
        rule: Rule = "max",
        sparsity: float = 0.01,
        seed: int = 0,
    ):
        super().__init__()
        self.gamma, self.rule = float(gamma), rule
        self.indicators = RandomIndicators(obs_dim, num_tasks, seed, sparsity)
        self.head = PVNHead(hidden_dim, num_actions, num_tasks)

    @classmethod
    def from_config(cls, config: GymConfig, obs_dim: int, model: nn.Module) -> PVNAuxiliary:
        """The ``pvn_*`` fields for an ``ActorCritic`` ``model`` (head width ``hidden_sizes[-1]``; one
        column per discrete action, one for a continuous action); indicators seeded by ``config.seed``."""
        actions = model.action_dim if model.discrete else 1
        return cls(
            obs_dim,
            config.hidden_sizes[-1],
            actions,
            config.pvn_tasks,
            config.pvn_gamma,
            config.pvn_rule,
            config.pvn_sparsity,
            config.seed,
        )

    @property
    def calibrated(self) -> bool:
        return not bool(torch.isnan(self.indicators.threshold).any())

    def calibrate(self, obs: Tensor) -> None:
        """Fix the indicator sets from ``obs[..., D]`` (flattened to rows) unless already calibrated."""
        if not self.calibrated:
            self.indicators.calibrate(obs.reshape(-1, obs.shape[-1]))

    def loss(self, model: nn.Module, features: Tensor, actions: Tensor, next_obs: Tensor, terminated: Tensor) -> Tensor:
        """:func:`pvn_td_loss` of one minibatch -> scalar.

        ``model``: an ``ActorCritic``; ``features[B, H]``: its ``features(obs)`` with gradient;
        ``actions[B]`` (or ``[B, A]`` continuous: ignored); ``next_obs[B, D]``: the true ``s'``;
        ``terminated[B]``: no bootstrap (truncation bootstraps). ``rule="policy"`` weighs ``ψ(s', ·)``
        by the current policy's probabilities at ``s'``.
        """
        with torch.no_grad():
            psi_next = self.head(model.features(next_obs))
            probs = model.action_probs(next_obs) if self.rule == "policy" and model.discrete else None
        if not model.discrete:
            actions = torch.zeros(features.shape[0], dtype=torch.long, device=features.device)
        return pvn_td_loss(
            self.head(features), actions, self.indicators(next_obs), psi_next, self.gamma, self.rule, terminated, probs
        )
