"""Preference pairs: loading and validating local files, and a generator of pairs whose truth is known.

A pair is ``(prompt, chosen, rejected)`` plus, for multi-objective reward models, one label per objective:
``1.0`` (chosen is better on that objective), ``0.0`` (rejected is better) or ``None`` (not labelled). A
single-objective pair has the label ``1.0``: the file's order is the label.

The generator (:func:`generate_pairs`) scores candidate completions with rule-based reward functions
(``f(prompts, completions) -> list[float]``), orders each pair by the first reward, and flips exactly
``round(flip_fraction * n)`` pairs, so a reward model's accuracy on clean held-out pairs is measurable.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

OnInvalid = Literal["raise", "skip"]
Sampler = Callable[[random.Random], tuple[str, str, str]]


@dataclasses.dataclass(frozen=True)
class PreferencePair:
    """One comparison. ``labels[k]``: 1.0 chosen better on objective k, 0.0 rejected better, None unknown."""

    prompt: Any
    chosen: Any
    rejected: Any
    labels: tuple[float | None, ...] = (1.0,)
    user: str | None = None  # who labelled the pair (personalized reward models, VPL)


@dataclasses.dataclass
class PairSet:
    """Validated pairs of one source, the objective names, and the rows skipped (``(row, reason)``)."""

    pairs: list[PreferencePair]
    objectives: tuple[str, ...]
    source: str = "pairs"
    skipped: list[tuple[int, str]] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pairs)


class PreferenceDataError(ValueError):
    """A malformed preference row, naming the source (file) and the row (0-based)."""


def _text_problem(value: Any, field: str) -> str | None:
    """Why ``value`` is not a usable prompt/response (None: it is): a non-empty string or chat messages."""
    if value is None:
        return f"{field!r} is missing"
    if isinstance(value, str):
        return None if value.strip() else f"{field!r} is empty"
    if isinstance(value, list) and value and all(isinstance(m, Mapping) and "content" in m for m in value):
        return None
    return f"{field!r} must be a non-empty string or a list of chat messages, got {type(value).__name__}"


def _label(value: Any, field: str) -> tuple[float | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, bool) or value not in (0, 1):
        return None, f"label {field!r} must be 1 (chosen better), 0 (rejected better) or null, got {value!r}"
    return float(value), None


def validate_rows(
    rows: Sequence[Mapping[str, Any]],
    source: str,
    *,
    objectives: Sequence[str] = (),
    prompt_column: str = "prompt",
    chosen_column: str = "chosen",
    rejected_column: str = "rejected",
    on_invalid: OnInvalid = "raise",
    user_column: str | None = None,
) -> PairSet:
    """Rows -> :class:`PairSet`. A row with a missing or empty prompt/chosen/rejected, identical chosen and
    rejected, a bad label or no label at all raises :class:`PreferenceDataError` naming ``source`` and the
    row, or (``on_invalid="skip"``) is skipped and listed in ``skipped``.

    objectives: label columns (one head each); empty means one objective ``"reward"`` labelled by the order.
    user_column: when given, every row needs a non-empty user id there (stored as ``PreferencePair.user``).
    """
    if on_invalid not in ("raise", "skip"):
        raise ValueError(f"on_invalid must be 'raise' or 'skip', got {on_invalid!r}")
    names = tuple(objectives) or ("reward",)
    pairs, skipped = [], []
    for index, row in enumerate(rows):
        problem = None
        for field in (prompt_column, chosen_column, rejected_column):
            problem = problem or _text_problem(row.get(field), field)
        if problem is None and user_column is not None and not str(row.get(user_column) or "").strip():
            problem = f"{user_column!r} (the user id) is missing or empty"
        if problem is None and row[chosen_column] == row[rejected_column]:
            problem = f"{chosen_column!r} and {rejected_column!r} are identical"
        labels: tuple[float | None, ...] = (1.0,)
        if problem is None and objectives:
            parsed = [_label(row.get(name), name) for name in objectives]
            problem = next((err for _, err in parsed if err), None)
            labels = tuple(value for value, _ in parsed)
            if problem is None and all(v is None for v in labels):
                problem = f"no objective is labelled (columns {list(objectives)} are all null or missing)"
        if problem is not None:
            if on_invalid == "raise":
                raise PreferenceDataError(f"{source}, row {index}: {problem}")
            skipped.append((index, problem))
            continue
        user = str(row[user_column]) if user_column is not None else None
        pairs.append(PreferencePair(row[prompt_column], row[chosen_column], row[rejected_column], labels, user))
    if not pairs:
        raise PreferenceDataError(f"{source}: no valid preference pairs ({len(skipped)} rows skipped)")
    return PairSet(pairs, names, source, skipped)


def load_pairs(
    path: str | Path,
    *,
    objectives: Sequence[str] = (),
    prompt_column: str = "prompt",
    chosen_column: str = "chosen",
    rejected_column: str = "rejected",
    on_invalid: OnInvalid = "raise",
    user_column: str | None = None,
) -> PairSet:
    """Preference pairs from a local ``.jsonl`` / ``.json`` / ``.parquet`` / ``.csv`` file (read with
    ``datasets``); rows are validated by :func:`validate_rows` (errors name the file and the 0-based row)."""
    from polyreward.lm.data import load_rows

    rows = load_rows(path, prompt_column)
    return validate_rows(
        rows,
        str(path),
        objectives=objectives,
        prompt_column=prompt_column,
        chosen_column=chosen_column,
        rejected_column=rejected_column,
        on_invalid=on_invalid,
        user_column=user_column,
    )


def split_pairs(pairs: PairSet, eval_fraction: float, seed: int = 0) -> tuple[PairSet, PairSet]:
    """A seeded random split into (train, held-out); the held-out part has ``round(eval_fraction * n)`` pairs."""
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_eval = round(eval_fraction * len(pairs))
    if not 0 < n_eval < len(pairs):
        raise ValueError(f"eval_fraction={eval_fraction} leaves no pairs on one side of {len(pairs)} pairs")
    pick = [pairs.pairs[i] for i in order]
    make = lambda part, tag: PairSet(part, pairs.objectives, f"{pairs.source} ({tag})")  # noqa: E731
    return make(pick[n_eval:], "train"), make(pick[:n_eval], "held-out")


# ---------------------------------------------------------------- generated pairs with known truth


@dataclasses.dataclass
class GeneratedPairs:
    """Generated pairs; ``flipped[i]`` says pair i's stored order contradicts its first reward."""

    pairs: PairSet
    flipped: list[bool]
    rewards: list[tuple[tuple[float, ...], tuple[float, ...]]]  # (chosen, rejected) reward vectors as stored


def generate_pairs(
    n: int,
    rewards: Mapping[str, Callable[..., list]],
    sample: Sampler,
    *,
    flip_fraction: float = 0.0,
    seed: int = 0,
    max_tries: int = 100,
) -> GeneratedPairs:
    """``n`` pairs from ``sample(rng) -> (prompt, completion_a, completion_b)``, ordered by rule-based rewards.

    rewards: name -> ``f(prompts, completions) -> list[float]`` (a polyreward reward function); the first one
        decides chosen vs rejected (samples where it ties are redrawn), every one gives an objective label
        (1.0 / 0.0, None on a tie) relative to the stored order.
    flip_fraction: exactly ``round(flip_fraction * n)`` pairs, picked at random, have chosen and rejected
        swapped (annotation noise on the first objective); the other labels still describe the stored order.
    """
    if not 0.0 <= flip_fraction <= 1.0:
        raise ValueError(f"flip_fraction must be in [0, 1], got {flip_fraction}")
    if not rewards:
        raise ValueError("generate_pairs needs at least one reward function")
    rng = random.Random(seed)
    names = tuple(rewards)
    drawn: list[tuple[str, str, str, tuple[float, ...], tuple[float, ...]]] = []
    while len(drawn) < n:
        batch = [sample(rng) for _ in range(max(n - len(drawn), 8))]
        prompts = [p for p, _, _ in batch for _ in (0, 1)]
        completions = [c for _, a, b in batch for c in (a, b)]
        scores = [list(fn(prompts, completions)) for fn in rewards.values()]
        for j, (prompt, a, b) in enumerate(batch):
            ra = tuple(float(s[2 * j]) for s in scores)
            rb = tuple(float(s[2 * j + 1]) for s in scores)
            if ra[0] != rb[0] and len(drawn) < n:
                drawn.append((prompt, a, b, ra, rb) if ra[0] > rb[0] else (prompt, b, a, rb, ra))
        max_tries -= 1
        if max_tries <= 0 and len(drawn) < n:
            raise ValueError(f"generate_pairs: the first reward {names[0]!r} ties too often to draw {n} pairs")
    flipped = [False] * n
    for i in rng.sample(range(n), round(flip_fraction * n)):
        flipped[i] = True
    pairs, kept = [], []
    for (prompt, c, r, rc, rr), flip in zip(drawn, flipped, strict=True):
        if flip:
            c, r, rc, rr = r, c, rr, rc
        labels = tuple(None if a == b else float(a > b) for a, b in zip(rc, rr, strict=True))
        labels = (1.0, *labels[1:])  # the stored order is the (possibly wrong) first-objective label
        pairs.append(PreferencePair(prompt, c, r, labels))
        kept.append((rc, rr))
    return GeneratedPairs(PairSet(pairs, names, f"generated(seed={seed})"), flipped, kept)


#: Word lists of the built-in sentiment task (also the vocabulary of the tiny test models).
POSITIVE = ("good", "great", "fine", "nice", "happy", "love", "best", "clean")
NEGATIVE = ("bad", "poor", "sad", "awful", "hate", "worst", "dirty", "broken")
NEUTRAL = ("the", "a", "it", "was", "very", "food", "room", "staff", "and", "so")
TOPICS = ("hotel", "cafe", "phone", "movie")
SENTIMENT_WORDS = (*POSITIVE, *NEGATIVE, *NEUTRAL, *TOPICS, "review", "of")


def sentiment_reward(prompts, completions, **_) -> list[float]:
    """Rule-based: the number of positive words minus the number of negative words."""
    return [float(sum((w in POSITIVE) - (w in NEGATIVE) for w in c.split())) for c in completions]


def brevity_reward(prompts, completions, **_) -> list[float]:
    """Rule-based: minus the number of words (shorter is better)."""
    return [-float(len(c.split())) for c in completions]


def sentiment_sample(rng: random.Random, min_words: int = 3, max_words: int = 8) -> tuple[str, str, str]:
    """A prompt ``"review of <topic>"`` and two random reviews mixing positive, negative and neutral words."""

    def review() -> str:
        pool = rng.choice([POSITIVE, NEGATIVE, NEUTRAL, NEUTRAL])
        return " ".join(
            rng.choice(pool if rng.random() < 0.5 else NEUTRAL + POSITIVE + NEGATIVE)
            for _ in range(rng.randint(min_words, max_words))
        )

    return f"review of {rng.choice(TOPICS)}", review(), review()


def sentiment_pairs(
    n: int, *, flip_fraction: float = 0.0, seed: int = 0, objectives: Sequence[str] = ("sentiment",)
) -> GeneratedPairs:
    """The built-in checkable task: ``objectives`` from ``"sentiment"`` (first: decides the order) and
    ``"brevity"``; see :func:`generate_pairs`."""
    known = {"sentiment": sentiment_reward, "brevity": brevity_reward}
    unknown = [o for o in objectives if o not in known]
    if unknown or not objectives:
        raise ValueError(f"sentiment_pairs objectives must come from {sorted(known)}, got {list(objectives)}")
    return generate_pairs(n, {o: known[o] for o in objectives}, sentiment_sample, flip_fraction=flip_fraction, seed=seed)


# ---------------------------------------------------------------- users with different preferences (VPL)


@dataclasses.dataclass
class GeneratedUsers:
    """Pairs labelled by simulated users; ``user_types[user]`` is the objective that user prefers."""

    pairs: PairSet
    user_types: dict[str, str]


def users_of(pairs: Sequence[PreferencePair]) -> dict[str, list[PreferencePair]]:
    """Pairs grouped by ``user`` (first-seen order); a pair without a user raises ``ValueError``."""
    groups: dict[str, list[PreferencePair]] = {}
    for index, pair in enumerate(pairs):
        if pair.user is None:
            raise ValueError(f"pair {index} has no user; personalized models need a user id on every pair")
        groups.setdefault(pair.user, []).append(pair)
    return groups


def user_pairs(
    n_users: int,
    pairs_per_user: int,
    *,
    objectives: Sequence[str] = ("sentiment", "brevity"),
    pool_size: int | None = None,
    conflict_only: bool = True,
    seed: int = 0,
    prefix: str = "user",
    max_tries: int = 100_000,
) -> GeneratedUsers:
    """Pairs of the built-in sentiment task labelled by ``n_users`` users of ``len(objectives)`` types.

    A shared pool of ``pool_size`` (default ``2 * pairs_per_user``) candidate pairs is drawn first; each
    user labels ``pairs_per_user`` distinct pairs of it, so the same pair is labelled by several users (as
    in VPL's datasets). User ``u`` (id ``f"{prefix}{u}"``) prefers ``objectives[u % len(objectives)]``: its
    chosen completion is the one with the higher reward on that objective. ``conflict_only``: the pool holds
    only pairs on which the objectives disagree, so users of different types label every pair in opposite
    ways and a model that cannot tell users apart is right on ~50% of them. Objectives come from
    ``"sentiment"`` and ``"brevity"``.
    """
    known = {"sentiment": sentiment_reward, "brevity": brevity_reward}
    if not objectives or any(o not in known for o in objectives):
        raise ValueError(f"user_pairs objectives must come from {sorted(known)}, got {list(objectives)}")
    pool_size = 2 * pairs_per_user if pool_size is None else pool_size
    if n_users < 1 or not 1 <= pairs_per_user <= pool_size:
        raise ValueError(
            f"need n_users >= 1 and 1 <= pairs_per_user <= pool_size, got {n_users}, {pairs_per_user}, {pool_size}"
        )
    rng = random.Random(seed)
    pool: list[tuple[str, str, str, list[float]]] = []  # prompt, a, b, [reward(a) - reward(b) per objective]
    for _ in range(max_tries):
        prompt, a, b = sentiment_sample(rng)
        diffs = [known[o]([prompt] * 2, [a, b]) for o in objectives]
        diffs = [s[0] - s[1] for s in diffs]
        if 0 in diffs or (conflict_only and len({d > 0 for d in diffs}) < 2):
            continue
        pool.append((prompt, a, b, diffs))
        if len(pool) == pool_size:
            break
    else:
        raise ValueError(f"user_pairs: could not draw {pool_size} usable pairs in {max_tries} tries")
    pairs, types = [], {}
    for u in range(n_users):
        user, k = f"{prefix}{u}", u % len(objectives)
        types[user] = objectives[k]
        for prompt, a, b, diffs in rng.sample(pool, pairs_per_user):
            chosen, rejected = (a, b) if diffs[k] > 0 else (b, a)
            pairs.append(PreferencePair(prompt, chosen, rejected, (1.0,), user))
    return GeneratedUsers(PairSet(pairs, ("reward",), f"users(seed={seed})"), types)
