"""Sequence-classification reward models as reward functions.

:func:`reward_model_reward` scores each (prompt, completion) with a local ``AutoModelForSequenceClassification``
(any Hugging Face reward model, or one trained with :mod:`polyreward.rm`): the logit of a label,
``sigmoid(logit)`` or the softmax probability of a label, then ``(value - shift) / scale``.
See ``docs/rewards/judges.md``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal

import torch

from polyreward.rewards._model_io import (
    JudgeError,
    RewardFn,
    _check_lengths,
    _encode,
    _ensure_pad,
    _finite,
    _inference,
    _prompt_text,
    _resolve_model,
    _run_batched,
)
from polyreward.rewards.text import completion_text

RewardOutput = Literal["logit", "sigmoid", "prob"]


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


def rm_input_text(tokenizer, chat: bool, template: str, prompt, completion) -> str:
    """The text a reward model reads for one (prompt, completion).

    ``chat``: the tokenizer's chat template over the prompt messages (a string prompt is one user turn) plus the
    completion as assistant turn(s); otherwise ``template`` with fields ``{prompt}`` and ``{response}``.
    """
    if not chat:
        return template.format(prompt=_prompt_text(prompt), response=completion_text(completion))
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if isinstance(completion, str):
        messages.append({"role": "assistant", "content": completion})
    else:
        messages.extend(dict(m) for m in completion)
    return tokenizer.apply_chat_template(messages, tokenize=False)


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
            texts.append(rm_input_text(spec.tokenizer, spec.chat, spec.template, prompts[i], completion))
        except Exception as err:
            raise JudgeError(spec.name, i, f"could not build the reward-model input: {err!r}") from err
    owners = list(range(len(texts)))
    with _inference(spec.model):
        values = _run_batched(spec.name, owners, texts, spec.batch_size, lambda chunk: _rm_values(spec, chunk))
    _finite(spec.name, dict(enumerate(values)))
    return values
