"""Model-based rewards: a local causal LM as a judge, or a local sequence-classification reward model.

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

Reward models (:func:`reward_model_reward`): the logit of a label, ``sigmoid(logit)`` or the softmax
probability of a label, then ``(value - shift) / scale``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from polyreward.rewards.text import _content_text, completion_text

JudgeMode = Literal["score", "verdict", "pairwise"]
ModelKind = Literal["causal", "classifier"]
RewardOutput = Literal["logit", "sigmoid", "prob"]
RewardFn = Callable[..., list[float | None]]

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


class JudgeError(RuntimeError):
    """A judge or reward model failed on ``sample`` (its index in the batch; None: the whole batch)."""

    def __init__(self, reward: str, sample: int | None, cause: str):
        self.reward, self.sample, self.cause = reward, sample, cause
        where = "the whole batch" if sample is None else f"sample {sample}"
        super().__init__(f"reward {reward!r} failed on {where}: {cause}")


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


# ---------------------------------------------------------------- loading and sharing

_CACHE: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}
_CACHE_LOCK = threading.Lock()


def load_judge_model(
    path: str | os.PathLike, kind: ModelKind = "causal", device: str | torch.device | None = None, dtype=None
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a local directory, loaded once per (path, kind, device, dtype) and shared.

    ``kind="causal"`` uses ``AutoModelForCausalLM``, ``"classifier"`` ``AutoModelForSequenceClassification``.
    ``device`` defaults to CUDA when available, else CPU. Nothing is downloaded: the path must exist.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    resolved = Path(path).expanduser().resolve()
    if not resolved.is_dir():
        raise FileNotFoundError(f"judge model directory {str(path)!r} does not exist (models are never downloaded)")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    key = (str(resolved), kind, str(device), str(dtype))
    with _CACHE_LOCK:
        if key not in _CACHE:
            auto = AutoModelForCausalLM if kind == "causal" else AutoModelForSequenceClassification
            extra = {} if dtype is None else {"dtype": dtype}
            model = auto.from_pretrained(resolved, local_files_only=True, **extra).to(device).eval()
            _CACHE[key] = (model, AutoTokenizer.from_pretrained(resolved, local_files_only=True))
        return _CACHE[key]


def clear_judge_cache() -> None:
    """Forget every shared model (they are freed once no reward function holds them)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _resolve_model(model, tokenizer, kind: ModelKind, device, dtype) -> tuple[Any, Any, str]:
    """(model, tokenizer, label for default names) from a path or an already-loaded model."""
    if isinstance(model, str | os.PathLike):
        loaded, loaded_tok = load_judge_model(model, kind, device, dtype)
        return loaded, tokenizer or loaded_tok, Path(model).expanduser().resolve().name
    source = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")
    if tokenizer is None:
        if not source or not Path(source).is_dir():
            raise ValueError("an already-loaded model needs its tokenizer: pass tokenizer=")
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    return model, tokenizer, Path(source).name or type(model).__name__


def _ensure_pad(tokenizer) -> None:
    """Batching needs a pad token; fall back to EOS (the usual choice for decoder-only models)."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a pad nor an EOS token: set tokenizer.pad_token")
        tokenizer.pad_token = tokenizer.eos_token


@contextlib.contextmanager
def _inference(model):
    """No gradients, dropout off; restores the model's train/eval mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


# ---------------------------------------------------------------- text rendering


def _prompt_text(prompt: Any) -> str:
    """A prompt string as is; a chat prompt as a ``Role: content`` transcript (roles capitalized)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence):
        return "\n\n".join(
            f"{str(m.get('role', 'user')).capitalize()}: {_content_text(m.get('content', ''))}"
            for m in prompt
            if isinstance(m, Mapping)
        )
    raise TypeError(f"expected a prompt string or a list of chat messages, got {type(prompt).__name__}")


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


def _encode(tokenizer, texts: list[str], add_special: bool, side: str, device) -> tuple[Tensor, Tensor]:
    enc = tokenizer(texts, padding=True, return_tensors="pt", padding_side=side, add_special_tokens=add_special)
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


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


def _run_batched(name: str, owners: list[int], items: list, batch_size: int, call: Callable[[list], list]) -> list:
    """``call`` on chunks of ``items``; on failure, finds the failing item and names its sample (``owners``)."""
    results: list = []
    for start in range(0, len(items), batch_size):
        chunk, who = items[start : start + batch_size], owners[start : start + batch_size]
        try:
            results.extend(call(chunk))
        except Exception as err:
            for owner, item in zip(who, chunk, strict=True):
                try:
                    call([item])
                except Exception as single:
                    raise JudgeError(name, owner, f"the model call failed: {single!r}") from single
            raise JudgeError(name, None, f"the model call failed on samples {who[0]}..{who[-1]}: {err!r}") from err
    return results


def _finite(name: str, values: dict[int, float]) -> None:
    for i, v in values.items():
        if not math.isfinite(v):
            raise JudgeError(name, i, f"the model gave a non-finite reward ({v})")


def _check_lengths(name: str, prompts, completions, columns: Mapping[str, Any], column: str | None):
    if len(prompts) != len(completions):
        raise JudgeError(name, None, f"{len(prompts)} prompts for {len(completions)} completions")
    if column is None:
        return None
    if column not in columns:
        raise JudgeError(name, None, f"needs a {column!r} column (one per completion); got {sorted(columns)}")
    if len(columns[column]) != len(completions):
        raise JudgeError(name, None, f"{len(columns[column])} {column!r} values for {len(completions)} completions")
    return columns[column]


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


# ---------------------------------------------------------------- sequence-classification reward model


@dataclasses.dataclass(frozen=True)
class _RMSpec:
    name: str
    model: Any
    tokenizer: Any
    chat: bool
    template: str
    label: int
    output: RewardOutput
    shift: float
    scale: float
    batch_size: int


def reward_model_reward(
    model: str | os.PathLike | Any,
    tokenizer: Any = None,
    *,
    label: int | str | None = None,
    output: RewardOutput = "logit",
    shift: float = 0.0,
    scale: float = 1.0,
    name: str | None = None,
    template: str = "{prompt}\n\n{response}",
    use_chat_template: bool | None = None,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
) -> RewardFn:
    """A reward function from a local sequence-classification reward model; see ``docs/rewards/judges.md``.

    model: a local directory (``AutoModelForSequenceClassification``, shared via :func:`load_judge_model`) or
        an already-loaded model (pass ``tokenizer``).
    label: which output: an index or a name from ``config.label2id``; default 0 when ``num_labels == 1``,
        required otherwise.
    output: ``"logit"`` (raw), ``"sigmoid"`` (``sigmoid(logit)``, for single-logit Bradley-Terry RMs) or
        ``"prob"`` (softmax over the labels; needs ``num_labels >= 2``).
    shift, scale: optional normalization ``reward = (value - shift) / scale`` (e.g. the RM's mean and std on
        reference data); scale > 0.
    template / use_chat_template: the input is the chat template over the prompt messages plus the
        completion as assistant turn(s) when the tokenizer has one (default), else ``template``
        (fields ``{prompt}``, ``{response}``).
    name: default ``"<model dir>_rm"`` (plus ``"_<label>"`` when the model has several labels).
    """
    if output not in ("logit", "sigmoid", "prob"):
        raise ValueError(f"output must be 'logit', 'sigmoid' or 'prob', got {output!r}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    model, tokenizer, model_label = _resolve_model(model, tokenizer, "classifier", device, dtype)
    _ensure_pad(tokenizer)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id  # the classifier pools the last non-pad token
    index, label_name = _rm_label(model.config, label, output)
    chat = bool(getattr(tokenizer, "chat_template", None)) if use_chat_template is None else use_chat_template
    suffix = f"_{label_name}" if model.config.num_labels > 1 else ""
    spec = _RMSpec(
        name or f"{model_label}_rm{suffix}", model, tokenizer, chat, template, index, output, shift, scale, batch_size
    )

    def reward(prompts, completions, **columns) -> list[float | None]:
        return _rm_batch(spec, prompts, completions, columns)

    reward.__name__ = reward.__qualname__ = spec.name
    reward.model, reward.tokenizer = model, tokenizer  # type: ignore[attr-defined]
    return reward


def _rm_label(config, label: int | str | None, output: RewardOutput) -> tuple[int, str]:
    n = config.num_labels
    if output == "prob" and n < 2:
        raise ValueError("output='prob' needs a model with num_labels >= 2 (use 'sigmoid' for a single logit)")
    if label is None:
        if n != 1:
            raise ValueError(f"the model has {n} labels ({config.id2label}): pass label= (an index or a name)")
        label = 0
    if isinstance(label, str):
        if label not in config.label2id:
            raise ValueError(f"label {label!r} is not one of the model's labels {sorted(config.label2id)}")
        label = int(config.label2id[label])
    if not 0 <= label < n:
        raise ValueError(f"label index {label} is out of range for a model with {n} labels")
    return label, str(config.id2label.get(label, label))


def _rm_text(spec: _RMSpec, prompt, completion) -> str:
    if not spec.chat:
        return spec.template.format(prompt=_prompt_text(prompt), response=completion_text(completion))
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if isinstance(completion, str):
        messages.append({"role": "assistant", "content": completion})
    else:
        messages.extend(dict(m) for m in completion)
    return spec.tokenizer.apply_chat_template(messages, tokenize=False)


def _rm_values(spec: _RMSpec, texts: list[str]) -> list[float]:
    """Right padding (pad id = the model's): the classifier pools each row's last non-pad token."""
    ids, mask = _encode(spec.tokenizer, texts, not spec.chat, "right", spec.model.device)
    ids = ids.masked_fill(mask == 0, spec.model.config.pad_token_id)
    logits = spec.model(input_ids=ids, attention_mask=mask).logits.float()
    if spec.output == "prob":
        value = logits.softmax(-1)[:, spec.label]
    else:
        value = logits[:, spec.label]
        value = value.sigmoid() if spec.output == "sigmoid" else value
    return ((value - spec.shift) / spec.scale).tolist()


def _rm_batch(spec: _RMSpec, prompts, completions, columns) -> list[float | None]:
    _check_lengths(spec.name, prompts, completions, columns, None)
    texts = []
    for i, completion in enumerate(completions):
        try:
            texts.append(_rm_text(spec, prompts[i], completion))
        except Exception as err:
            raise JudgeError(spec.name, i, f"could not build the reward-model input: {err!r}") from err
    owners = list(range(len(texts)))
    with _inference(spec.model):
        values = _run_batched(spec.name, owners, texts, spec.batch_size, lambda chunk: _rm_values(spec, chunk))
    _finite(spec.name, dict(enumerate(values)))
    return values
