"""Reward-model losses and preference statistics: pure tensor functions, no model, no config.

Shapes: ``N`` pairs, ``K`` objectives (reward heads), ``M`` ensemble members. ``delta[N, K]`` is always
``r(x, y_c) - r(x, y_r)``: the chosen reward minus the rejected reward, in reward units (logits).

Sources (checked against the paper text, arXiv 2401.06080 v2, "Secrets of RLHF in Large Language Models
Part II: Reward Modeling", Wang et al. 2024):

- Eq. 2 / 10, Bradley-Terry: ``L = -log sigma(r_c - r_r)``.
- Eq. 4, preference strength: ``mu_i = mean_m d_im``, ``sigma_i = sqrt(sum_m (d_im - mu_i)^2 / M)``
  (the population std, divided by M, not M - 1).
- Eq. 5, label smoothing: ``L = -[(1 - alpha) log p + alpha log(1 - p)]``, ``p = sigma(r_c - r_r)``.
- Eq. 6, adaptive margin: ``L = -log sigma(r_c - r_r - mu_hat(x, y))``.
- Section 2.5: "Flip" flips the labels of noisy pairs; "Soft Label + Margin" smooths the labels of pairs
  with preference strength < 0 and adds the margin to every pair.
- Eq. 9, SimCSE: ``l_i = -log( exp(sim(h_s^i, h_t^i)/tau) / sum_j exp(sim(h_s^i, h_t^j)/tau) )`` on the
  "preference difference" representations ``f(x, y_c) - f(x, y_r)`` (Section 3.1.1).

All of them are one function here: :func:`preference_loss` is binary cross-entropy on the logit
``delta - margin`` with a per-pair target ``t`` (1 = chosen is better, 0 = flipped, ``1 - alpha`` =
smoothed), which is Eq. 2 for ``t = 1, m = 0``, Eq. 5 for ``t = 1 - alpha``, Eq. 6 for ``m = mu_hat``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Denoise = Literal["none", "flip", "smooth"]


def bt_loss(delta: Tensor, margin: Tensor | float = 0.0) -> Tensor:
    """Elementwise Bradley-Terry loss ``-log sigma(delta - margin)``, same shape as ``delta`` (nats)."""
    return -F.logsigmoid(delta - margin)


def preference_loss(
    delta: Tensor, target: Tensor | None = None, margin: Tensor | float = 0.0, mask: Tensor | None = None
) -> Tensor:
    """Mean of ``-[t log sigma(delta - m) + (1 - t) log(1 - sigma(delta - m))]`` over unmasked entries.

    delta, target, margin, mask: ``[N, K]`` (or any one shape); target defaults to 1 (plain BT), margin to 0,
    mask (bool, True = labelled) to all True. A flipped pair (t = 0) with margin ``mu < 0`` becomes the BT
    loss of the swapped pair with margin ``|mu|``. Returns a scalar; 0 when nothing is labelled.
    """
    z = delta - margin
    target = torch.ones_like(z) if target is None else target.to(z.dtype)
    loss = F.binary_cross_entropy_with_logits(z, target, reduction="none")
    if mask is None:
        return loss.mean()
    mask = mask.to(z.dtype)
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)


def preference_strength(diffs: Tensor, unbiased: bool = False) -> tuple[Tensor, Tensor]:
    """Mean and std over the ensemble axis (Eq. 4): ``diffs[M, ...]`` -> ``(mu[...], sigma[...])``.

    ``diffs[m] = r_m(x, y_c) - r_m(x, y_r)``. The paper divides by ``M`` (population std); ``unbiased=True``
    divides by ``M - 1`` instead.
    """
    if diffs.shape[0] < 2 and unbiased:
        raise ValueError("an unbiased std needs at least 2 ensemble members")
    return diffs.mean(0), diffs.std(0, correction=1 if unbiased else 0)


def denoise_targets(
    mu: Tensor, labels: Tensor | None = None, rule: Denoise = "none", alpha: float = 0.1, threshold: float = 0.0
) -> Tensor:
    """Per-pair targets ``t`` from the ensemble mean ``mu`` of ``r_c - r_r`` (Sections 2.4.1 and 2.5).

    labels: the given targets ``t0`` (1 = chosen better, 0 = rejected better; default 1), same shape as ``mu``.
    A pair is *suspect* when its strength in the labelled direction, ``mu * (2 t0 - 1)``, is below
    ``threshold`` (0: the ensemble disagrees with the label). ``"none"``: t = t0. ``"flip"``: suspect pairs
    get ``1 - t0``. ``"smooth"``: suspect pairs get ``t0 (1 - alpha) + (1 - t0) alpha`` (Eq. 5's soft label).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    t0 = torch.ones_like(mu) if labels is None else labels.to(mu.dtype)
    if rule == "none":
        return t0
    suspect = mu * (2 * t0 - 1) < threshold
    if rule == "flip":
        return torch.where(suspect, 1 - t0, t0)
    if rule == "smooth":
        return torch.where(suspect, t0 * (1 - alpha) + (1 - t0) * alpha, t0)
    raise ValueError(f"rule must be 'none', 'flip' or 'smooth', got {rule!r}")


def adaptive_margin(mu: Tensor, scale: float = 1.0) -> Tensor:
    """Eq. 6's margin ``scale * mu_hat`` (the paper uses ``scale = 1``); same shape as ``mu``."""
    return scale * mu


def simcse_loss(h_s: Tensor, h_t: Tensor, temperature: float = 0.05) -> Tensor:
    """SimCSE (Eq. 9): cross-entropy of cosine similarities ``[N, N] / tau`` with the diagonal as the positive.

    h_s, h_t: ``[N, D]``, two views (different dropout masks) of the same N representations. Returns a scalar.
    """
    if h_s.shape != h_t.shape or h_s.dim() != 2:
        raise ValueError(f"h_s and h_t must both be [N, D], got {tuple(h_s.shape)} and {tuple(h_t.shape)}")
    sim = F.cosine_similarity(h_s[:, None, :], h_t[None, :, :], dim=-1) / temperature
    return F.cross_entropy(sim, torch.arange(h_s.shape[0], device=h_s.device))


def pair_accuracy(delta: Tensor, target: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    """Fraction of labelled pairs ranked the labelled way, per objective: ``[N, K]`` -> ``[K]``.

    A pair counts as right when ``delta > 0`` and t >= 0.5, or ``delta < 0`` and t < 0.5; a tie is half right.
    Objectives with no labelled pair give NaN.
    """
    target = torch.ones_like(delta) if target is None else target
    mask = torch.ones_like(delta, dtype=torch.bool) if mask is None else mask.bool()
    sign = torch.where(target >= 0.5, 1.0, -1.0)
    right = ((delta * sign).sign() + 1) / 2
    count = mask.sum(0)
    return torch.where(count > 0, (right * mask).sum(0) / count.clamp(min=1), torch.nan)


def directional_rewards(rewards: Tensor, direction: Tensor) -> Tensor:
    """DPA-style scalar reward ``v^T r`` with ``v = direction / ||direction||`` (arXiv 2402.18571).

    rewards: ``[N, K]``; direction: ``[K]`` (e.g. ``(cos theta, sin theta)`` for K = 2). Returns ``[N]``.
    """
    norm = direction.norm()
    if direction.shape != rewards.shape[-1:] or not norm > 0:
        raise ValueError(f"direction must be a non-zero [K={rewards.shape[-1]}] vector, got {direction.tolist()}")
    return rewards @ (direction / norm).to(rewards.dtype)


def gaussian_kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mean, exp(logvar)) || N(0, I))`` summed over the last axis: ``[..., D]`` -> ``[...]`` (nats)."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(-1)


def vpl_elbo(delta: Tensor, kl: Tensor, beta: float, mask: Tensor | None = None) -> Tensor:
    """VPL objective to maximize (arXiv 2408.10075): ``sum_i log sigma(delta_i) - beta * KL``, per user.

    delta: ``[U, C]``, ``r(x_i, y_w, z) - r(x_i, y_l, z)`` for C labelled pairs of each of U users (z sampled
    from the user's posterior); kl: ``[U]``; mask ``[U, C]`` marks real pairs. Returns ``[U]``.
    """
    logp = F.logsigmoid(delta)
    if mask is not None:
        logp = logp * mask.to(logp.dtype)
    return logp.sum(-1) - beta * kl


def label_token_loss(logits: Tensor, label_ids: Sequence[Sequence[int]], target: Tensor) -> Tensor:
    """Cross-entropy of a judge's answer token (Pairwise-RL's generative RM, arXiv 2504.04950), mean over N.

    logits: ``[N, V]`` next-token logits at the answer position; ``label_ids[l]``: the token ids that spell label
    ``l`` (e.g. ``"A"`` and ``" A"``); target: ``[N]`` label index. The loss is ``-log sum_{v in ids(t)} softmax(
    logits)_v`` over the whole vocabulary, so every spelling the judge later reads counts as the label.
    """
    log_probs = logits.float().log_softmax(-1)
    per_label = torch.stack([log_probs[:, list(ids)].logsumexp(-1) for ids in label_ids], -1)  # [N, L]
    return -per_label.gather(1, target.long()[:, None]).mean()


def position_consistency(p_first: Tensor, p_second: Tensor) -> dict[str, Tensor]:
    """A pairwise judge's verdicts on N pairs shown in both orders.

    p_first: ``[N]`` P(judge picks slot A | the preferred response is in slot A); p_second: ``[N]`` P(picks slot B |
    the preferred response is in slot B), both normalized over the two labels. Returns scalars:
    ``accuracy`` (verdicts right, over the 2N orderings, ties half), ``consistency`` (pairs whose two verdicts pick
    the same response, whichever it is) and ``win_accuracy`` (pairs with ``(p_first + p_second) / 2 > 0.5``, the
    averaged score ``judge_reward(mode="pairwise")`` gives; ties half).
    """
    right = lambda p: (p > 0.5).float() + 0.5 * (p == 0.5).float()  # noqa: E731
    return {
        "accuracy": torch.cat([right(p_first), right(p_second)]).mean(),
        "consistency": ((p_first > 0.5) == (p_second > 0.5)).float().mean(),
        "win_accuracy": right((p_first + p_second) / 2).mean(),
    }
