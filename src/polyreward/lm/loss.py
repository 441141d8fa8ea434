"""Policy-gradient losses as pure tensor functions (the verl ``core_algos`` shape).

Shapes: ``B`` sequences in a micro-batch, ``L`` response tokens, ``V`` vocabulary.
A loss is computed per token, then reduced with :func:`reduce_tokens` by a normalizer that is
fixed for the whole optimizer step (:func:`loss_normalizer`), so that splitting a batch into
micro-batches for gradient accumulation does not change the gradient.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Reduction = Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "constant"]


def token_logprobs(logits: Tensor, tokens: Tensor) -> Tensor:
    """``log p(token)`` from ``logits[B, L, V]`` for ``tokens[B, L]`` -> ``[B, L]``.

    Uses ``logsumexp`` instead of a full ``log_softmax`` to avoid a second ``[B, L, V]`` tensor.
    """
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def token_entropy(logits: Tensor) -> Tensor:
    """Entropy of the next-token distribution, ``[B, L, V]`` -> ``[B, L]`` (nats)."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def clipped_surrogate(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, clip_low: float = 0.2, clip_high: float = 0.2
) -> tuple[Tensor, Tensor]:
    """PPO clipped objective per token, asymmetric clipping as in DAPO (``clip_high > clip_low``).

    ``loss = max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))`` with ``r = exp(logp - old_logp)``.
    Args: ``logprobs[B, L]``, ``old_logprobs[B, L]``, ``advantages[B]`` (broadcast over tokens) or
    ``[B, L]`` (per token, e.g. per turn). Returns ``(loss[B, L], clipped[B, L])``, ``clipped`` being
    1.0 where the clipped branch was active.
    """
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    return torch.maximum(unclipped, clipped), (clipped > unclipped).to(logprobs.dtype)


def kl_k3(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-token KL estimate to a reference policy (Schulman's k3): ``exp(d) - d - 1``, ``d = ref - logp``.

    Unbiased for ``KL(pi || ref)`` under samples from pi, and always >= 0. ``[B, L]`` -> ``[B, L]``.
    """
    delta = ref_logprobs - logprobs
    return torch.exp(delta) - delta - 1


def loss_normalizer(mask: Tensor, mode: Reduction, max_tokens: int | None = None) -> float:
    """The denominator for one optimizer step, from the step's full ``mask[B_total, L]``.

    - ``token-mean``: number of response tokens in the step;
    - ``seq-mean-token-sum``: number of sequences with at least one masked-in token (each
      sequence's token sum, averaged over the sequences the loss covers);
    - ``seq-mean-token-mean``: number of sequences (per-token weights ``1/len`` come from
      :func:`token_weights`);
    - ``constant`` (Dr.GRPO): ``sequences * max_tokens``, a length-independent constant.
    """
    sequences = max(int((mask.sum(-1) > 0).sum()), 1)  # rows the loss covers (a channel may mask some out)
    if mode == "token-mean":
        return float(mask.sum().clamp_min(1))
    if mode in ("seq-mean-token-sum", "seq-mean-token-mean"):
        return float(sequences)
    if mode == "constant":
        if max_tokens is None:
            raise ValueError("loss reduction 'constant' (Dr.GRPO) needs max_tokens (the generation limit)")
        return float(sequences * max_tokens)
    raise ValueError(f"unknown loss reduction {mode!r}; choose one of {list(Reduction.__args__)}")


def token_weights(mask: Tensor, mode: Reduction) -> Tensor:
    """Per-token weights ``[B, L]``: the mask, or ``mask / length`` for ``seq-mean-token-mean``."""
    weights = mask.to(torch.get_default_dtype()) if not mask.is_floating_point() else mask
    if mode == "seq-mean-token-mean":
        return weights / weights.sum(-1, keepdim=True).clamp_min(1)
    return weights


def reduce_tokens(values: Tensor, mask: Tensor, mode: Reduction, normalizer: float) -> Tensor:
    """``sum(values * weights) / normalizer``: one micro-batch's share of the step's loss.

    Summing this over the micro-batches of a step gives the full-batch reduction exactly.
    """
    return (values * token_weights(mask, mode).to(values.dtype)).sum() / normalizer


def sft_token_loss(logprobs: Tensor, mask: Tensor, mode: Reduction, normalizer: float) -> Tensor:
    """One micro-batch's share of the SFT loss: ``reduce_tokens(−log p(demo token), mask, mode, normalizer)``.

    ``logprobs[B, L]`` of the demonstration tokens, ``mask[B, L]`` (bool); ``normalizer`` from
    :func:`polyreward.lm.loss.loss_normalizer` over the step's full demonstration mask, so that
    micro-batches sum to the full-batch loss. Returns a scalar (nats per normalizer unit).
    """
    return reduce_tokens(-logprobs, mask, mode, normalizer)
