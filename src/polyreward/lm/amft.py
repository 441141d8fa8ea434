"""AMFT (Adaptive Meta Fine-Tuning, arXiv 2508.06944): one policy trained on ``(1 − μ)·L_RL + μ·L_SFT``.

A controller learns the imitation weight μ. Every step it moves μ towards a target policy entropy;
every ``meta_every`` steps it also follows the one-step-lookahead meta-gradient of a validation loss:
after the SGD step ``θ' = θ − α·((1 − μ)·g_RL + μ·g_SFT)``,
``dL_val(θ')/dμ = −α·∇L_val(θ')·(g_SFT − g_RL) ≈ −α·∇L_val(θ)·(g_SFT − g_RL)`` (first order, the
gradient taken at the current weights, as the released code does). Constants and the update rule
follow the released code (``src/controller/adaptive_weight_controller.py``, ``configs/main_config.yaml``
of github.com/TSYJ-He/AMFT); docs/controllers.md lists what is confirmed and what differs.

The SFT loss is the token negative log-likelihood of a demonstration per prompt, reduced with the
trainer's loss-reduction mode (:func:`polyreward.lm.loss.sft_token_loss`; demonstrations are encoded
by :func:`polyreward.lm.rollout.demonstration_rollout`). The trainer supplies the
gradients through the generic :class:`~polyreward.lm.controllers.SupervisedTerm` /
:class:`~polyreward.lm.controllers.LossMix` hooks.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import torch
from torch import Tensor

from polyreward.lm.controllers import Controller, LossMix, SupervisedTerm, register


# ---------------------------------------------------------------------------------------------- pure math
def mu_meta_gradient(val_grad: Tensor, sft_grad: Tensor, rl_grad: Tensor, learning_rate: float) -> float:
    """``dL_val/dμ = −α·⟨∇L_val, g_SFT − g_RL⟩`` for the lookahead step ``θ' = θ − α·((1−μ)g_RL + μ g_SFT)``.

    All gradients are flattened ``[P]`` vectors over the same parameters; ``learning_rate`` is α.
    Exact when ``val_grad`` is taken at ``θ'``; AMFT takes it at ``θ`` (first order in α).
    Computed in float64.
    """
    diff = sft_grad.double() - rl_grad.double()
    return float(-learning_rate * torch.dot(val_grad.double(), diff))


def entropy_gap(target: float, current: float) -> float:
    """The entropy drive of μ, ``H_target − H_current`` (nats): positive (raise μ, imitate more)
    when the policy's entropy has fallen below the target, as in the released ``update_mu``."""
    return target - current


def next_mu(
    mu: float, meta_gradient: float, gap: float, meta_lr: float, entropy_lr: float, low: float, high: float
) -> float:
    """``clip(μ − meta_lr·dL_val/dμ + entropy_lr·gap, low, high)``: descent on the validation loss
    plus the entropy drive. (The released code adds ``+meta_lr·dL_val/dμ``, an ascent; see docs.)"""
    return min(high, max(low, mu - meta_lr * meta_gradient + entropy_lr * gap))


# ---------------------------------------------------------------------------------------------- controller
@register("amft")
@dataclasses.dataclass
class AMFT(Controller):
    """Learn the SFT weight μ of ``(1 − μ)·L_RL + μ·L_SFT`` (AMFT, arXiv 2508.06944).

    ``demonstration``: a ``str.format`` template over the row's columns giving the SFT target of a
    prompt (``"{demonstration}"``: a ``demonstration`` column; ``"<answer>{answer}</answer>"`` for the
    arithmetic task). The first ``warmup_steps`` steps are pure SFT (μ = 1); the target entropy is
    then the policy's entropy on the demonstrations (or ``target_entropy``). Afterwards, every step
    ``μ ← clip(μ − meta_lr·dL_val/dμ + entropy_lr·(H_target − H_rollouts), mu_min, mu_max)``, the
    meta term on every ``meta_every``-th step only, ``L_val`` being the demonstration NLL of
    ``validation_rows`` fixed rows. Defaults: the released ``configs/main_config.yaml``.
    """

    demonstration: str = "{demonstration}"
    mu_init: float = 0.8
    mu_min: float = 0.05
    mu_max: float = 0.95
    meta_lr: float = 1e-4
    entropy_lr: float = 5e-4
    meta_every: int = 20
    warmup_steps: int = 50
    target_entropy: float | None = None
    validation_rows: int = 8
    mu: float = dataclasses.field(default=0.0, init=False)
    entropy_target: float | None = dataclasses.field(default=None, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.demonstration, str) or not self.demonstration:
            raise ValueError(f"demonstration: a non-empty format string over row columns, got {self.demonstration!r}")
        if not 0.0 <= self.mu_min <= self.mu_max <= 1.0:
            raise ValueError(f"mu_min, mu_max: need 0 <= mu_min <= mu_max <= 1, got {self.mu_min}, {self.mu_max}")
        if not self.mu_min <= self.mu_init <= self.mu_max:
            raise ValueError(f"mu_init: must lie in [mu_min, mu_max] = [{self.mu_min}, {self.mu_max}], got {self.mu_init}")
        for name in ("meta_lr", "entropy_lr", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("meta_every", "validation_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.target_entropy is not None and self.target_entropy < 0:
            raise ValueError(f"target_entropy: must be >= 0 nats (None: measured after warm-up), got {self.target_entropy}")
        self.mu, self.entropy_target = float(self.mu_init), self.target_entropy
        self._step_rows: list[dict[str, Any]] = []

    def bind(self, rewards, data, seed: int) -> None:
        self._prompt_column = data.prompt_column
        self.target_of(data.rows[0], 0)  # a template naming a missing column fails before step 0
        rng = random.Random(seed * 1_000_003 + 2508_06944)
        picked = rng.sample(range(len(data.rows)), min(self.validation_rows, len(data.rows)))
        self._validation = [data.rows[i] for i in sorted(picked)]

    def target_of(self, row: dict[str, Any], index: int) -> str:
        """The demonstration text of ``row`` (``index``: its place, for the error message)."""
        try:
            return self.demonstration.format(**row)
        except (KeyError, IndexError) as err:
            raise ValueError(
                f"amft.demonstration: row {index} has no column {err}; template {self.demonstration!r}, "
                f"columns {sorted(row)}"
            ) from err

    def observe(self, step, batch, indices, rows, texts) -> dict[str, float]:
        self._step_rows = list(rows)
        return {}

    def is_meta_step(self, step: int) -> bool:
        return step >= self.warmup_steps and (step - self.warmup_steps) % self.meta_every == 0 and self.meta_lr > 0

    def supervised(self, step: int) -> SupervisedTerm:
        validation = self._demonstrations(self._validation) if self.is_meta_step(step) else None
        return SupervisedTerm(*self._demonstrations(self._step_rows), validation=validation)

    def _demonstrations(self, rows: list[dict[str, Any]]) -> tuple[list[Any], list[str]]:
        return [r[self._prompt_column] for r in rows], [self.target_of(r, i) for i, r in enumerate(rows)]

    def mix(self, step: int, inputs: LossMix) -> tuple[float, float, dict[str, float]]:
        if step < self.warmup_steps:
            return 0.0, 1.0, {"amft/mu": 1.0, "amft/warmup": 1.0}
        if self.entropy_target is None:
            self.entropy_target = inputs.sft_entropy  # the released code: entropy on SFT data after warm-up
        metrics = {"amft/target_entropy": self.entropy_target, "amft/warmup": 0.0}
        if inputs.epoch == 0:  # μ moves once per step, before the update (released order)
            meta = 0.0
            if inputs.val_grad is not None:
                meta = mu_meta_gradient(inputs.val_grad, inputs.sft_grad, inputs.rl_grad, inputs.learning_rate)
            gap = entropy_gap(self.entropy_target, inputs.rl_entropy)
            self.mu = next_mu(self.mu, meta, gap, self.meta_lr, self.entropy_lr, self.mu_min, self.mu_max)
            metrics |= {"amft/meta_gradient": meta, "amft/entropy_gap": gap}
        return 1.0 - self.mu, self.mu, {**metrics, "amft/mu": self.mu}

    def state_dict(self) -> dict[str, Any]:
        return {"mu": self.mu, "entropy_target": self.entropy_target}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mu = float(state.get("mu", self.mu_init))
        self.entropy_target = state.get("entropy_target", self.target_entropy)
