"""Data selection from rewards: B-STaR's balance score and variance-based prompt selection.

- :func:`balance_score`: B-STaR (arXiv 2412.17256, ICLR 2025), ``cal_modi_acc_soft`` in
  ``hkust-nlp/B-STaR`` ``train_code/metric_modiacc_auto.py``; used to pick the sampling temperature
  and reward threshold of each self-improvement iteration.
- :func:`bstar_balance_table`, :func:`bstar_choose`: the per-iteration grid search of
  temperature and reward threshold (``main`` in the same file: thresholds -1.0 .. 1.0 by 0.01).
- :func:`select_by_reward_variance`: keep prompts whose rewards vary across repeated runs (the
  variance-aware data selection of the Temporal-R1 line, arXiv 2506.01908; threshold details not
  verified against released code). Constant rows give zero GRPO advantage, so dropping them wastes
  no learning signal.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import torch
from torch import Tensor


def balance_scores(n_correct: Sequence[int] | Tensor, n_kept: Sequence[int] | Tensor, n_star: int = 8) -> list[float]:
    """Per-query B-STaR balance scores ``bs_i`` (queries with ``n_kept = 0`` give NaN).

    ``bs_i = n'_i / n_i`` if ``n'_i >= n*``, else ``(n'_i / n*) · (n'_i / n_i)``, i.e.
    ``min(n'_i / n*, 1) · n'_i / n_i``: a query needs ``n*`` correct kept responses for full credit
    (exploration), and the kept set should be mostly correct (exploitation). ``n_kept[Q]`` counts the
    responses kept after deduplication and the reward threshold; ``n_correct[Q]`` those of them
    that are correct.
    """
    correct, kept = _counts(n_correct, "n_correct"), _counts(n_kept, "n_kept")
    if len(correct) != len(kept):
        raise ValueError(f"balance_score: n_correct has {len(correct)} queries, n_kept has {len(kept)}")
    if n_star < 1:
        raise ValueError(f"balance_score: n_star must be >= 1, got {n_star}")
    out = []
    for q, (c, k) in enumerate(zip(correct, kept, strict=True)):
        if c > k:
            raise ValueError(f"balance_score: query {q} has n_correct={c} > n_kept={k}")
        out.append(math.nan if k == 0 else min(c / n_star, 1.0) * c / k)
    return out


def balance_score(n_correct: Sequence[int] | Tensor, n_kept: Sequence[int] | Tensor, n_star: int = 8) -> float:
    """B-STaR's balance score: the mean of :func:`balance_scores` over queries that kept a response.

    Queries with nothing kept are left out, as in the released code (they never enter its table).
    With no such query the score is 0.0: that (temperature, threshold) setting yields no data.
    """
    scores = [s for s in balance_scores(n_correct, n_kept, n_star) if not math.isnan(s)]
    return sum(scores) / len(scores) if scores else 0.0


def _counts(values: Sequence[int] | Tensor, name: str) -> list[int]:
    items = values.tolist() if isinstance(values, Tensor) else list(values)
    for q, v in enumerate(items):
        if isinstance(v, bool) or not float(v).is_integer() or v < 0:
            raise ValueError(f"balance_score: {name}[{q}] must be a count (integer >= 0), got {v!r}")
    return [int(v) for v in items]


def reward_variance(rewards: Tensor | Sequence[Sequence[float]]) -> Tensor:
    """Unbiased variance (ddof = 1) of each row of ``rewards[M, R]`` over its finite values -> ``var[M]``.

    NaN entries (runs where the reward did not apply) are ignored; rows with fewer than two finite
    values get NaN.
    """
    r = torch.as_tensor(rewards, dtype=torch.float64)
    if r.dim() != 2:
        raise ValueError(f"reward_variance: rewards must be [M, R], got shape {tuple(r.shape)}")
    finite = torch.isfinite(r)
    count = finite.sum(dim=1)
    zeroed = torch.where(finite, r, torch.zeros_like(r))
    mean = zeroed.sum(dim=1) / count.clamp(min=1)
    sq = torch.where(finite, (r - mean[:, None]) ** 2, torch.zeros_like(r)).sum(dim=1)
    var = sq / (count - 1).clamp(min=1)
    return torch.where(count >= 2, var, torch.full_like(var, math.nan))


def select_by_reward_variance(
    rewards: Tensor | Sequence[Sequence[float]], min_var: float | None = None, top_frac: float | None = None
) -> Tensor:
    """``mask[M]`` (bool) of the prompts to keep, from ``rewards[M, R]`` of R repeated runs per prompt.

    - ``min_var``: keep rows with variance ``> min_var`` (strict, so ``min_var=0`` drops constant rows);
    - ``top_frac``: keep the ``ceil(top_frac · M)`` rows of highest variance (ties: lower index first);
    - both: rows that pass both; neither: ``min_var = 0`` (drop all-correct and all-wrong prompts).

    Variance is unbiased over the finite entries (:func:`reward_variance`); rows with fewer than two
    finite rewards are never kept. For 0/1 rewards with success rate p, ``var = p(1-p)·R/(R-1)``.
    """
    if top_frac is not None and not 0 < top_frac <= 1:
        raise ValueError(f"select_by_reward_variance: top_frac must be in (0, 1], got {top_frac}")
    if min_var is not None and (not math.isfinite(min_var) or min_var < 0):
        raise ValueError(f"select_by_reward_variance: min_var must be a finite number >= 0, got {min_var}")
    var = reward_variance(rewards)
    known = ~torch.isnan(var)
    threshold = 0.0 if min_var is None and top_frac is None else min_var
    keep = known.clone()
    if threshold is not None:
        keep &= var > threshold
    if top_frac is not None:
        k = math.ceil(top_frac * len(var))
        order = sorted(range(len(var)), key=lambda i: (not bool(known[i]), -float(var[i]) if known[i] else 0.0, i))
        top = torch.zeros_like(keep)
        top[order[:k]] = True
        keep &= top
    return keep


def repeated_samples(samples: Sequence[Hashable], group: int) -> Tensor:
    """``dup[Q, S]`` (bool): sample ``j`` of query ``i`` repeats an earlier sample of the same query.

    ``samples``: ``Q * S`` hashable samples (texts, token tuples), query-major, ``S = group``. The
    released B-STaR code deduplicates (query, output) pairs before counting.
    """
    if group < 1 or len(samples) % group:
        raise ValueError(f"repeated_samples: {len(samples)} samples do not split into queries of {group}")
    out = torch.zeros(len(samples) // group, group, dtype=torch.bool)
    for q in range(len(samples) // group):
        seen: set[Hashable] = set()
        for j, sample in enumerate(samples[q * group : (q + 1) * group]):
            out[q, j] = sample in seen
            seen.add(sample)
    return out


def bstar_balance_table(
    scores: Tensor, correct: Tensor, thresholds: Sequence[float], n_star: int = 8, duplicate: Tensor | None = None
) -> Tensor:
    """Balance score of every (temperature, threshold) pair -> ``table[T, H]``.

    ``scores[T, Q, S]``: the selection score of ``S`` samples of ``Q`` probe queries drawn at each
    of ``T`` temperatures (B-STaR: ``min(PRM)/5 + ORM``; here any scalar, e.g. the weighted reward
    sum); ``correct[T, Q, S]`` (bool): the sample is correct; ``duplicate[T, Q, S]`` (bool, optional):
    the sample repeats an earlier one of its query (the released code deduplicates). A sample is kept
    at threshold ``tau`` when ``score > tau`` (strict, as in ``get_unique_trn_json``); then
    :func:`balance_score` over the queries that kept something (0.0 when none did).
    """
    if scores.dim() != 3 or correct.shape != scores.shape:
        raise ValueError(
            f"bstar_balance_table: scores and correct must both be [T, Q, S], got {tuple(scores.shape)} "
            f"and {tuple(correct.shape)}"
        )
    valid = ~duplicate if duplicate is not None else torch.ones_like(correct, dtype=torch.bool)
    tau = torch.as_tensor(list(thresholds), dtype=scores.dtype)
    kept = (scores[..., None] > tau) & valid[..., None]  # [T, Q, S, H]
    n = kept.sum(2).to(torch.float64)  # [T, Q, H]
    good = (kept & correct.bool()[..., None]).sum(2).to(torch.float64)
    per_query = torch.clamp(good / n_star, max=1.0) * good / n.clamp(min=1)
    has = n > 0
    total = torch.where(has, per_query, torch.zeros_like(per_query)).sum(1)
    count = has.sum(1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))  # [T, H]


def bstar_choose(table: Tensor, temperatures: Sequence[float], thresholds: Sequence[float]) -> tuple[float, float, float]:
    """``(temperature, threshold, balance)`` of the best cell of :func:`bstar_balance_table`.

    Ties go to the earlier temperature, then the lower threshold: the released search walks the
    threshold upwards and replaces its best only on a strict improvement.
    """
    if table.shape != (len(temperatures), len(thresholds)):
        raise ValueError(f"bstar_choose: table is {tuple(table.shape)}, expected ({len(temperatures)}, {len(thresholds)})")
    flat = int(torch.argmax(table.flatten()))  # argmax returns the first maximum
    t, h = divmod(flat, len(thresholds))
    return float(temperatures[t]), float(thresholds[h]), float(table[t, h])


def pass_rate_band(pass_rates: Tensor | Sequence[float], low: float, high: float) -> Tensor:
    """``mask[M]``: prompts whose pass rate lies in ``[low, high]`` (NaN, i.e. never tried, is kept).

    Intermediate pass rates are where GRPO groups have reward variance; with ``0 < low`` and
    ``high < 1`` this drops the all-wrong and all-right prompts.
    """
    if not 0 <= low <= high <= 1:
        raise ValueError(f"pass_rate_band: needs 0 <= low <= high <= 1, got low={low}, high={high}")
    p = torch.as_tensor(pass_rates, dtype=torch.float64)
    return torch.isnan(p) | ((p >= low) & (p <= high))


def learning_progress_probs(lp: Tensor, seen: Tensor, epsilon: float) -> Tensor:
    """Task probabilities ``p[T]`` from learning progress ``lp[T]`` (>= 0) and ``seen[T]`` (bool).

    ``p = (1 - eps) * q + eps / T``, ``q`` proportional to ``lp`` over seen tasks; unseen tasks take
    all of ``q`` until every task has been tried once; ``q`` is uniform when every ``lp`` is 0.
    """
    n = lp.numel()
    lp = lp.double()
    if (~seen).any():
        q = (~seen).double()
    elif lp.sum() > 0:
        q = lp.clamp(min=0)
    else:
        q = torch.ones(n, dtype=torch.float64)
    return (1 - epsilon) * q / q.sum() + epsilon / n
