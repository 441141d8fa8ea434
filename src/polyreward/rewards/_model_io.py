"""Shared plumbing for model-based rewards (judges and reward models): loading and sharing local models,
batched model calls that name the failing sample, and prompt rendering.

Split from :mod:`polyreward.rewards.judges`; the public names stay importable from there.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from polyreward.rewards.text import _content_text

ModelKind = Literal["causal", "classifier"]
RewardFn = Callable[..., list[float | None]]


class JudgeError(RuntimeError):
    """A judge or reward model failed on ``sample`` (its index in the batch; None: the whole batch)."""

    def __init__(self, reward: str, sample: int | None, cause: str):
        self.reward, self.sample, self.cause = reward, sample, cause
        where = "the whole batch" if sample is None else f"sample {sample}"
        super().__init__(f"reward {reward!r} failed on {where}: {cause}")


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


# ---------------------------------------------------------------- text and batched model calls


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


def _encode(tokenizer, texts: list[str], add_special: bool, side: str, device) -> tuple[Tensor, Tensor]:
    enc = tokenizer(texts, padding=True, return_tensors="pt", padding_side=side, add_special_tokens=add_special)
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


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
