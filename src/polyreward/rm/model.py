"""A reward model: a causal-LM backbone plus K linear heads read at the last non-pad token.

Built on Hugging Face ``AutoModelForSequenceClassification`` (``num_labels = K``, ``id2label`` = the
objective names), so a saved model is a plain HF directory: it loads here (:meth:`RewardModel.load`), as
polyreward reward components (:func:`reward_functions`, one per head, or :func:`directional_reward`),
through :func:`polyreward.rewards.reward_model_reward` (``label=<objective>``), or in any HF tool.
``polyreward_rm.json`` next to the weights records the objectives and the text format.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from polyreward.rewards.reward_models import rm_input_text
from polyreward.rm.losses import directional_rewards

META_FILE = "polyreward_rm.json"
DEFAULT_TEMPLATE = "{prompt}\n\n{response}"


def last_token_index(mask: Tensor) -> Tensor:
    """``mask[B, T]`` (1 = real token) -> ``[B]`` index of each row's last real token (any padding side)."""
    positions = torch.arange(mask.shape[1], device=mask.device)
    return (positions * mask.long()).argmax(-1)


class RewardModel(nn.Module):
    """``forward(input_ids, attention_mask) -> (rewards[B, K], features[B, H])`` plus text helpers.

    ``classifier``: a HF sequence-classification model (its backbone and ``score`` head are used; the
    pooling is the mask's last real token, so left or right padding both work). ``chat``: render inputs with
    the tokenizer's chat template, else ``template`` (fields ``{prompt}``, ``{response}``).
    """

    def __init__(self, classifier, tokenizer, *, chat: bool | None = None, template: str = DEFAULT_TEMPLATE):
        super().__init__()
        if not hasattr(classifier, "score") or not isinstance(classifier.score, nn.Linear):
            raise TypeError(f"{type(classifier).__name__} has no linear 'score' head; use a decoder-only backbone")
        self.classifier, self.tokenizer = classifier, tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if classifier.config.pad_token_id is None:
            classifier.config.pad_token_id = tokenizer.pad_token_id
        has_template = bool(getattr(tokenizer, "chat_template", None))
        self.chat = has_template if chat is None else chat
        if self.chat and not has_template:
            raise ValueError("chat=True but the tokenizer has no chat template")
        self.template = template

    @property
    def objectives(self) -> tuple[str, ...]:
        config = self.classifier.config
        return tuple(str(config.id2label[i]) for i in range(config.num_labels))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @classmethod
    def from_backbone(
        cls,
        path: str | Path,
        objectives: Sequence[str] = ("reward",),
        *,
        dtype: torch.dtype = torch.float32,
        seed: int | None = None,
        **kwargs: Any,
    ) -> RewardModel:
        """A fresh reward model on a local causal-LM directory (heads initialized with ``seed``)."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        names = list(objectives)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"objectives must be distinct names, got {names}")
        if seed is not None:
            torch.manual_seed(seed)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "score.weight newly initialized" is the point here, not a warning
        try:
            classifier = AutoModelForSequenceClassification.from_pretrained(
                path,
                num_labels=len(names),
                id2label=dict(enumerate(names)),
                label2id={n: i for i, n in enumerate(names)},
                dtype=dtype,
                local_files_only=True,
            )
        finally:
            hf_logging.set_verbosity(verbosity)
        return cls(classifier, AutoTokenizer.from_pretrained(path, local_files_only=True), **kwargs)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> RewardModel:
        """A reward model saved by :meth:`save`."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path)
        if not (path / META_FILE).is_file():
            raise FileNotFoundError(f"{path}: not a polyreward reward model (no {META_FILE})")
        meta = json.loads((path / META_FILE).read_text())
        if meta.get("kind") == "pairwise":
            raise ValueError(f"{path}: a pairwise judge (a causal LM); load it with judge_reward(path, mode='pairwise')")
        classifier = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return cls(classifier.to(device).eval(), tokenizer, chat=meta["chat"], template=meta["template"])

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Weights, tokenizer and ``polyreward_rm.json`` (objectives, text format, ``extra``) in ``path``."""
        path = Path(path)
        self.classifier.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        meta = {"objectives": list(self.objectives), "chat": self.chat, "template": self.template, **(extra or {})}
        (path / META_FILE).write_text(json.dumps(meta, indent=2))
        return path

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.classifier.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last_token_index(attention_mask)]
        return self.classifier.score(pooled).float(), pooled

    def texts(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[str]:
        return [
            rm_input_text(self.tokenizer, self.chat, self.template, p, c) for p, c in zip(prompts, completions, strict=True)
        ]

    def encode(self, texts: list[str], max_length: int | None = None) -> tuple[Tensor, Tensor]:
        enc = self.tokenizer(
            texts,
            padding=True,
            truncation=max_length is not None,
            max_length=max_length,
            return_tensors="pt",
            padding_side="right",
            add_special_tokens=not self.chat,
        )
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    def score_texts(self, texts: list[str], batch_size: int = 16, max_length: int | None = None) -> Tensor:
        """``[len(texts), K]`` rewards, no gradients, dropout off (the train/eval mode is restored)."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                out = [
                    self(*self.encode(texts[i : i + batch_size], max_length))[0] for i in range(0, len(texts), batch_size)
                ]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, len(self.objectives))

    def score(self, prompts: Sequence[Any], completions: Sequence[Any], batch_size: int = 16) -> Tensor:
        """``[N, K]`` rewards of N (prompt, completion) pairs."""
        return self.score_texts(self.texts(prompts, completions), batch_size)


class _SharedScorer:
    """Scores a batch once for all K heads: the reward functions of one model ask it in turn."""

    def __init__(self, model: RewardModel, batch_size: int):
        self.model, self.batch_size = model, batch_size
        self._key: tuple[str, ...] | None = None
        self._values: Tensor | None = None

    def __call__(self, prompts, completions) -> Tensor:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
        texts = self.model.texts(prompts, completions)
        key = tuple(texts)
        if key != self._key:
            self._values, self._key = self.model.score_texts(texts, self.batch_size), key
        values = self._values
        if not torch.isfinite(values).all():
            bad = int((~torch.isfinite(values)).any(-1).nonzero()[0])
            raise ValueError(f"reward model gave a non-finite reward for sample {bad}")
        return values


def _as_model(model: RewardModel | str | Path, device: str | torch.device) -> RewardModel:
    return model if isinstance(model, RewardModel) else RewardModel.load(model, device)


def reward_functions(
    model: RewardModel | str | Path,
    objectives: Sequence[str] | None = None,
    *,
    prefix: str = "",
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> list:
    """One reward function ``f(prompts, completions, **kw) -> list[float]`` per head (default: all heads).

    Each is named ``prefix + <objective>`` and carries ``.model``; the K functions share one forward pass per
    batch, so using them as K components of a :class:`~polyreward.rewards.RewardSet` costs one model call.
    """
    rm = _as_model(model, device)
    names = list(rm.objectives if objectives is None else objectives)
    unknown = [n for n in names if n not in rm.objectives]
    if unknown:
        raise ValueError(f"objectives {unknown} are not heads of this model (heads: {list(rm.objectives)})")
    scorer = _SharedScorer(rm, batch_size)
    return [_head_function(scorer, rm.objectives.index(name), prefix + name) for name in names]


def _head_function(scorer: _SharedScorer, column: int, name: str):
    return named_reward(name, scorer.model, lambda prompts, completions: scorer(prompts, completions)[:, column])


def named_reward(name: str, model: nn.Module, score: Callable[[list, list], Tensor]):
    """A reward function ``f(prompts, completions, **kw) -> list[float]`` named ``name`` and carrying ``.model``.

    ``score(prompts, completions) -> [N]`` rewards; a length mismatch or a non-finite reward is a ``ValueError``
    naming the reward and the sample (the shared shape of every model-backed reward in this package).
    """

    def reward(prompts, completions, **_) -> list[float | None]:
        if len(prompts) != len(completions):
            raise ValueError(f"{name}: {len(prompts)} prompts for {len(completions)} completions")
        values = score(list(prompts), list(completions))
        if not torch.isfinite(values).all():
            raise ValueError(f"{name}: non-finite reward for sample {int((~torch.isfinite(values)).nonzero()[0])}")
        return values.tolist()

    reward.__name__ = reward.__qualname__ = name
    reward.model = model  # type: ignore[attr-defined]
    return reward


def directional_reward(
    model: RewardModel | str | Path,
    direction: Sequence[float],
    *,
    name: str = "rm_directional",
    batch_size: int = 16,
    device: str | torch.device = "cpu",
):
    """One reward ``v^T r(x, y)`` with ``v`` the unit vector along ``direction`` (one weight per head, DPA)."""
    rm = _as_model(model, device)
    vector = torch.tensor(list(direction), dtype=torch.float32)
    if vector.shape != (len(rm.objectives),):
        raise ValueError(f"direction needs one weight per head {list(rm.objectives)}, got {list(direction)}")
    scorer = _SharedScorer(rm, batch_size)
    return named_reward(name, rm, lambda prompts, completions: directional_rewards(scorer(prompts, completions), vector))


def reward_components(model: RewardModel | str | Path, objectives: Sequence[str] | None = None, **kwargs: Any) -> list:
    """:class:`~polyreward.rewards.RewardComponent` per head (weights 1); ``kwargs`` go to :func:`reward_functions`."""
    from polyreward.rewards.component import RewardComponent

    return [RewardComponent(fn) for fn in reward_functions(model, objectives, **kwargs)]
