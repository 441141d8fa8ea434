"""Model-based rewards: a local causal LM as a judge (and, re-exported, sequence-classification reward models).

Every factory returns a TRL-style batched reward function ``fn(prompts, completions, **columns) ->
list[float | None]`` whose ``__name__`` is the reward's name (default: model directory name + mode) and
which carries ``fn.model`` / ``fn.tokenizer``. Models given by path are loaded once per (path, kind,
device, dtype) and shared (:func:`load_judge_model`), so several judges on one model cost one load.

Generative judge modes (:func:`judge_reward`), all read from the judge's next-token distribution at the
answer position, ``p_l = softmax(logits[label ids])`` normalized over the valid label tokens only:

- ``"score"``: rate on labels ``1..M``; reward ``= sum_k p_k (k-1)/(M-1)`` = (E[score] - 1)/(M - 1) in [0, 1].
- ``"verdict"``: reward ``= P(Yes) / (P(Yes) + P(No))``.
- ``"pairwise"`` (Pairwise-RL, arXiv 2504.04950): win probability against a reference response, averaged
  over both orderings for position consistency: ``(P(A | response first) + P(B | response second)) / 2``,
  minus 0.5 when ``centered``.
- ``rethink=True`` (BR-RM, "Think Twice", arXiv 2510.23596) adds a first greedy pass that writes a short
  analysis (critical dimensions + hypotheses); the second pass reads the verdict conditioned on it.

Reward models (:func:`reward_model_reward`) live in :mod:`polyreward.rewards.reward_models` and the shared
loading / batching plumbing in :mod:`polyreward.rewards._model_io`; both are re-exported here so existing
imports keep working.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from polyreward.rewards._model_io import (
    JudgeError,
    ModelKind,
    RewardFn,
    _check_lengths,
    _encode,
    _ensure_pad,
    _finite,
    _inference,
    _prompt_text,
    _resolve_model,
    _run_batched,
    clear_judge_cache,
    load_judge_model,
)
from polyreward.rewards.reward_models import RewardOutput, reward_model_reward
from polyreward.rewards.text import completion_text

__all__ = [
    "ANALYSIS_TEMPLATES",
    "ANSWER_PREFIXES",
    "RECHECK_TEMPLATES",
    "TEMPLATES",
    "JudgeError",
    "JudgeMode",
    "ModelKind",
    "RewardFn",
    "RewardOutput",
    "clear_judge_cache",
    "expected_score",
    "judge_reward",
    "label_probabilities",
    "load_judge_model",
    "pairwise_win_probability",
    "reward_model_reward",
]

JudgeMode = Literal["score", "verdict", "pairwise"]

_CONTEXT = "[Conversation]\n{prompt}\n[End of conversation]\n\n"
_ONE = "[Response]\n{response}\n[End of response]\n\n"
_TWO = "[Response A]\n{response_a}\n[End of response A]\n\n[Response B]\n{response_b}\n[End of response B]\n\n"
_JUDGE = "You are an impartial judge of an AI assistant's answer to the last user turn of a conversation.\n\n"
_SCORE_Q = (
    "Rate the response (correctness, helpfulness, following the instructions) on a scale from 1 (very poor) "
    "to {max_score} (excellent). Reply with the number only."
)
_VERDICT_Q = "Is the response correct, helpful and faithful to the instructions? Reply with Yes or No only."
_PAIRWISE_Q = "Which response answers the last user turn better? Reply with A or B only."
_ANALYSE = (
    "Do not give a verdict yet. Name the one to three aspects that matter most for this request (for example "
    "factual accuracy, calculation, reasoning, code correctness, safety, completeness, instruction following) "
    "and, for each, say briefly where {target} might fail and what would settle it."
)
_RECHECK = "Now re-read {target}, testing each point of your analysis against the text. "

#: Single-pass judge prompts (user turn). Fields: {prompt}, {response}, {response_a}, {response_b}, {max_score}.
TEMPLATES: dict[str, str] = {
    "score": _JUDGE + _CONTEXT + _ONE + _SCORE_Q,
    "verdict": _JUDGE + _CONTEXT + _ONE + _VERDICT_Q,
    "pairwise": _JUDGE + _CONTEXT + _TWO + _PAIRWISE_Q,
}
#: ``rethink`` pass 1 (user turn): the judge writes its analysis (greedy, at most ``max_new_tokens``).
ANALYSIS_TEMPLATES: dict[str, str] = {
    "score": _JUDGE + _CONTEXT + _ONE + _ANALYSE.format(target="the response"),
    "verdict": _JUDGE + _CONTEXT + _ONE + _ANALYSE.format(target="the response"),
    "pairwise": _JUDGE + _CONTEXT + _TWO + _ANALYSE.format(target="each response"),
}
#: ``rethink`` pass 2 (a second user turn after the judge's analysis).
RECHECK_TEMPLATES: dict[str, str] = {
    "score": _RECHECK.format(target="the response") + _SCORE_Q,
    "verdict": _RECHECK.format(target="the response") + _VERDICT_Q,
    "pairwise": _RECHECK.format(target="both responses") + _PAIRWISE_Q,
}
#: Text the judge's answer starts with; the label token is read right after it.
ANSWER_PREFIXES: dict[str, str] = {"score": "Score:", "verdict": "Answer:", "pairwise": "Better response:"}
_DEFAULT_LABELS = {"verdict": ("Yes", "No"), "pairwise": ("A", "B")}


# ---------------------------------------------------------------- pure math


def label_probabilities(logits: Tensor, label_ids: Sequence[Sequence[int]]) -> Tensor:
    """Next-token probabilities of ``L`` labels, normalized over the labels' tokens only.

    ``logits[N, V]`` at the answer position; ``label_ids[l]`` lists the token ids that spell label ``l``
    (e.g. ``"4"`` and ``" 4"``); a label's probability is the sum over its ids. Returns ``[N, L]``, rows sum to 1.
    """
    flat = [i for ids in label_ids for i in ids]
    owner = torch.tensor([lab for lab, ids in enumerate(label_ids) for _ in ids], device=logits.device)
    probs = logits[:, flat].float().softmax(-1)
    return torch.zeros(logits.shape[0], len(label_ids), device=logits.device).index_add_(1, owner, probs)


def expected_score(probs: Tensor) -> Tensor:
    """``probs[N, M]`` over ordered scale labels 1..M -> ``(E[score] - 1) / (M - 1)`` in [0, 1], shape ``[N]``."""
    m = probs.shape[-1]
    return probs @ torch.linspace(0.0, 1.0, m, device=probs.device)


def pairwise_win_probability(p_first: Tensor, p_second: Tensor, centered: bool = False) -> Tensor:
    """Position-consistent win probability (Pairwise-RL), ``[N]``.

    ``p_first[N]``: P(judge picks the first slot | response shown first); ``p_second[N]``: P(judge picks the
    second slot | response shown second). Returns their mean, minus 0.5 when ``centered`` (the
    ``r = P - 0.5`` form; the centring constant is not confirmed from the paper).
    """
    return (p_first + p_second) / 2 - (0.5 if centered else 0.0)


# ---------------------------------------------------------------- text rendering


def _render(tokenizer, chat: bool, turns: Sequence[str], prefix: str) -> str:
    """Alternating user/assistant ``turns`` (user first and last) as the judge's input, ending in ``prefix``.

    ``chat``: the tokenizer's chat template with a generation prompt; otherwise the turns joined by newlines.
    """
    if not chat:
        return "\n".join(turns) + "\n" + prefix
    messages = [{"role": ("user", "assistant")[k % 2], "content": t} for k, t in enumerate(turns)]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prefix


def _label_token_ids(tokenizer, labels: Sequence[str]) -> list[list[int]]:
    """For each label, the single-token spellings among ``label`` and ``" " + label`` (deduplicated)."""
    out: list[list[int]] = []
    for label in labels:
        ids = []
        for spelling in (label, " " + label):
            enc = tokenizer.encode(spelling, add_special_tokens=False)
            if len(enc) == 1 and enc[0] not in ids and enc[0] != tokenizer.unk_token_id:
                ids.append(enc[0])
        if not ids:
            pieces = tokenizer.convert_ids_to_tokens(tokenizer.encode(label, add_special_tokens=False))
            raise ValueError(f"label {label!r} is not one known token for this tokenizer (it encodes to {pieces})")
        out.append(ids)
    taken = [i for ids in out for i in ids]
    if len(taken) != len(set(taken)):
        raise ValueError(f"labels {list(labels)} share token ids {out}; each label needs its own tokens")
    return out


# ---------------------------------------------------------------- batched model calls


def _forward_params(model) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


def _next_token_logits(model, tokenizer, texts: list[str], add_special: bool) -> Tensor:
    """``[B, V]`` logits after the last token of each text (left padding, positions counted from each start)."""
    ids, mask = _encode(tokenizer, texts, add_special, "left", model.device)
    kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
    params = _forward_params(model)
    if "position_ids" in params:
        kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
    if "logits_to_keep" in params:
        kwargs["logits_to_keep"] = 1
    return model(**kwargs).logits[:, -1, :].float()


def _generate(model, tokenizer, texts: list[str], add_special: bool, max_new_tokens: int) -> list[str]:
    """Greedy continuations of ``texts`` (at most ``max_new_tokens`` each), special tokens dropped, stripped."""
    from transformers import GenerationConfig

    ids, mask = _encode(tokenizer, texts, add_special, "left", model.device)
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None) or tokenizer.eos_token_id
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=eos
    )
    out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    return [t.strip() for t in tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)]


# ---------------------------------------------------------------- generative judge


@dataclasses.dataclass(frozen=True)
class _JudgeSpec:
    name: str
    model: Any
    tokenizer: Any
    mode: JudgeMode
    rethink: bool
    chat: bool
    template: str
    analysis_template: str
    recheck_template: str
    answer_prefix: str
    label_ids: list[list[int]]
    max_score: str
    reference_column: str
    centered: bool
    max_new_tokens: int
    batch_size: int


def judge_reward(
    model: str | os.PathLike | Any,
    tokenizer: Any = None,
    *,
    mode: JudgeMode = "score",
    rethink: bool = False,
    name: str | None = None,
    template: str | None = None,
    answer_prefix: str | None = None,
    analysis_template: str | None = None,
    recheck_template: str | None = None,
    labels: Sequence[str] | None = None,
    max_score: int | None = None,
    reference_column: str = "reference",
    centered: bool = False,
    max_new_tokens: int = 128,
    use_chat_template: bool | None = None,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
) -> RewardFn:
    """A reward function that asks a local causal LM to judge each completion; see ``docs/rewards/judges.md``.

    model: a local model directory (loaded with ``AutoModelForCausalLM``, shared via :func:`load_judge_model`)
        or an already-loaded model (then ``tokenizer`` is required unless its ``name_or_path`` is a directory).
    mode: ``"score"`` (expected score on 1..``max_score``, mapped to [0, 1]), ``"verdict"`` (P(Yes) over
        {Yes, No}) or ``"pairwise"`` (win probability against the ``reference_column`` column, both orderings).
    rethink: BR-RM two-pass mode: a greedy analysis (``analysis_template``, ``max_new_tokens``) then the
        verdict (``recheck_template``) conditioned on it.
    template / analysis_template / recheck_template / answer_prefix: override the defaults in ``TEMPLATES``,
        ``ANALYSIS_TEMPLATES``, ``RECHECK_TEMPLATES``, ``ANSWER_PREFIXES`` (``str.format`` fields: ``{prompt}``,
        ``{response}``, ``{response_a}``, ``{response_b}``, ``{max_score}``; write literal braces as ``{{ }}``).
    labels: the answer tokens: score mode, the scale worst to best (default ``"1".."max_score"``); verdict,
        (positive, negative) = ("Yes", "No"); pairwise, (first, second) = ("A", "B"). Each label must be a
        single token (with or without a leading space; both spellings count).
    max_score: top of the digit scale in score mode, 2..9 (default 5); not with ``labels``.
    centered: pairwise only: subtract 0.5 (reward in [-0.5, 0.5]). Default False: reward in [0, 1].
    use_chat_template: wrap the judge prompt in the tokenizer's chat template (default: when it has one).
    batch_size: judge sequences per forward pass (pairwise uses two per sample).
    device, dtype: for loading a model given by path (an already-loaded model stays where it is).
    name: the reward's name (default ``"<model dir>_<mode>"``, plus ``"_rethink"``).
    """
    if mode not in ("score", "verdict", "pairwise"):
        raise ValueError(f"mode must be 'score', 'verdict' or 'pairwise', got {mode!r}")
    if centered and mode != "pairwise":
        raise ValueError("centered=True only applies to mode='pairwise'")
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens must be >= 1, got {batch_size} and {max_new_tokens}")
    labels = _judge_labels(mode, labels, max_score)
    model, tokenizer, model_label = _resolve_model(model, tokenizer, "causal", device, dtype)
    _ensure_pad(tokenizer)
    chat = bool(getattr(tokenizer, "chat_template", None)) if use_chat_template is None else use_chat_template
    if chat and not getattr(tokenizer, "chat_template", None):
        raise ValueError("use_chat_template=True but the tokenizer has no chat template")
    spec = _JudgeSpec(
        name=name or f"{model_label}_{mode}" + ("_rethink" if rethink else ""),
        model=model,
        tokenizer=tokenizer,
        mode=mode,
        rethink=rethink,
        chat=chat,
        template=TEMPLATES[mode] if template is None else template,
        analysis_template=ANALYSIS_TEMPLATES[mode] if analysis_template is None else analysis_template,
        recheck_template=RECHECK_TEMPLATES[mode] if recheck_template is None else recheck_template,
        answer_prefix=ANSWER_PREFIXES[mode] if answer_prefix is None else answer_prefix,
        label_ids=_label_token_ids(tokenizer, labels),
        max_score=labels[-1],
        reference_column=reference_column,
        centered=centered,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
    )

    def reward(prompts, completions, **columns) -> list[float | None]:
        return _judge_batch(spec, prompts, completions, columns)

    reward.__name__ = reward.__qualname__ = spec.name
    reward.model, reward.tokenizer = model, tokenizer  # type: ignore[attr-defined]
    return reward


def _judge_labels(mode: JudgeMode, labels: Sequence[str] | None, max_score: int | None) -> list[str]:
    if mode != "score" and max_score is not None:
        raise ValueError("max_score only applies to mode='score'")
    if labels is not None:
        if max_score is not None:
            raise ValueError("give either labels or max_score, not both")
        labels = list(labels)
        need_two = mode != "score"
        if (need_two and len(labels) != 2) or len(labels) < 2:
            raise ValueError(f"mode {mode!r} needs {'exactly' if need_two else 'at least'} 2 labels, got {labels}")
        return labels
    if mode != "score":
        return list(_DEFAULT_LABELS[mode])
    top = 5 if max_score is None else max_score
    if not 2 <= top <= 9:
        raise ValueError(f"max_score must be in 2..9 (single-digit labels), got {top}; pass labels= for others")
    return [str(k) for k in range(1, top + 1)]


def _judge_batch(spec: _JudgeSpec, prompts, completions, columns) -> list[float | None]:
    refs = _check_lengths(
        spec.name, prompts, completions, columns, spec.reference_column if spec.mode == "pairwise" else None
    )
    templates = (spec.analysis_template, spec.recheck_template) if spec.rethink else (spec.template,)
    owners, orders, queries = [], [], []  # one entry per judge input; pairwise has two per sample
    for i, completion in enumerate(completions):
        if spec.mode == "pairwise" and refs[i] is None:
            continue  # no reference: not applicable
        try:
            response = completion_text(completion)
            slots = [(response, "")]
            if spec.mode == "pairwise":
                ref = completion_text(refs[i])
                slots = [(response, ref), (ref, response)]
            base = {"prompt": _prompt_text(prompts[i]), "response": response, "max_score": spec.max_score}
            for order, (a, b) in enumerate(slots):
                fields = {**base, "response_a": a, "response_b": b}
                queries.append(tuple(t.format(**fields) for t in templates))
                owners.append(i)
                orders.append(order)
        except Exception as err:
            raise JudgeError(spec.name, i, f"could not build the judge input: {err!r}") from err
    probs = _judge_probabilities(spec, owners, queries) if queries else []
    return _combine(spec, len(completions), owners, orders, probs)


def _judge_probabilities(spec: _JudgeSpec, owners: list[int], queries: list[tuple[str, ...]]) -> list[Tensor]:
    """Label probabilities ``[L]`` per judge input; ``queries`` holds (question,) or (analysis, recheck)."""
    model, tok, add_special = spec.model, spec.tokenizer, not spec.chat
    with _inference(model):
        if spec.rethink:
            analyses = _run_batched(
                spec.name,
                owners,
                [_render(tok, spec.chat, [q[0]], "") for q in queries],
                spec.batch_size,
                lambda chunk: _generate(model, tok, chunk, add_special, spec.max_new_tokens),
            )
            turns = [[q[0], a, q[1]] for q, a in zip(queries, analyses, strict=True)]
        else:
            turns = [[q[0]] for q in queries]
        texts = [_render(tok, spec.chat, t, spec.answer_prefix) for t in turns]
        return _run_batched(
            spec.name,
            owners,
            texts,
            spec.batch_size,
            lambda chunk: list(label_probabilities(_next_token_logits(model, tok, chunk, add_special), spec.label_ids)),
        )


def _combine(spec: _JudgeSpec, n: int, owners, orders, probs: list[Tensor]) -> list[float | None]:
    values: dict[int, float] = {}
    if spec.mode == "score":
        for i, p in zip(owners, probs, strict=True):
            values[i] = float(expected_score(p[None])[0])
    elif spec.mode == "verdict":
        for i, p in zip(owners, probs, strict=True):
            values[i] = float(p[0])
    else:
        first = {i: float(p[0]) for i, o, p in zip(owners, orders, probs, strict=True) if o == 0}
        second = {i: float(p[1]) for i, o, p in zip(owners, orders, probs, strict=True) if o == 1}
        win = pairwise_win_probability(
            torch.tensor(list(first.values())), torch.tensor(list(second.values())), spec.centered
        )
        values = dict(zip(first, win.tolist(), strict=True))
    _finite(spec.name, values)
    return [values.get(i) for i in range(n)]
