"""A generative pairwise judge trained on both orderings: Pairwise-RL (Zhang et al., arXiv 2504.04950).

A causal LM reads (prompt, response A, response B), rendered exactly as
:func:`polyreward.rewards.judge_reward` renders ``mode="pairwise"`` (``TEMPLATES["pairwise"]``, the tokenizer's
chat template when it has one, then ``ANSWER_PREFIXES["pairwise"]``), and is trained with cross-entropy on the
label token (``"A"`` or ``"B"``) at the answer position (:func:`~polyreward.rm.losses.label_token_loss`). With
``both_orderings`` every pair is shown twice, preferred response first (label A) and second (label B), the
position-consistency augmentation of Pairwise-RL; without it each pair is shown once in a seeded random order.

The trained model is a plain HF causal-LM directory, so ``judge_reward(run_dir / "model", mode="pairwise")``
serves it as a reward component (win probability against a ``reference`` column, averaged over both orders).

Metrics (``metrics.jsonl``): ``loss/rm``, ``rm/accuracy`` per step; per epoch ``eval/accuracy`` (verdicts right
over both orderings), ``eval/consistency`` (pairs whose two verdicts pick the same response) and
``eval/win_accuracy`` (pairs whose averaged win probability favours the preferred response).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polyreward.rewards._model_io import _ensure_pad, _inference, _prompt_text
from polyreward.rewards.judges import (
    _DEFAULT_LABELS,
    ANSWER_PREFIXES,
    TEMPLATES,
    _label_token_ids,
    _next_token_logits,
    _render,
    label_probabilities,
)
from polyreward.rewards.text import completion_text
from polyreward.rm.data import PairSet, PreferencePair
from polyreward.rm.losses import label_token_loss, position_consistency
from polyreward.runlog import RunLog

META_FILE = "polyreward_rm.json"  # the same file name as RewardModel's, with "kind": "pairwise"


@dataclasses.dataclass
class PairwiseJudge:
    """A causal LM, its tokenizer, whether inputs use the chat template, and the ids of labels ("A", "B")."""

    model: Any
    tokenizer: Any
    chat: bool
    label_ids: list[list[int]]

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> PairwiseJudge:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        _ensure_pad(tokenizer)
        chat = bool(getattr(tokenizer, "chat_template", None))
        return cls(model, tokenizer, chat, _label_token_ids(tokenizer, _DEFAULT_LABELS["pairwise"]))

    def text(self, prompt: Any, response_a: Any, response_b: Any) -> str:
        """The judge input of ``judge_reward(mode="pairwise")`` for one ordering (default templates)."""
        a, b = completion_text(response_a), completion_text(response_b)
        question = TEMPLATES["pairwise"].format(prompt=_prompt_text(prompt), response=a, response_a=a, response_b=b)
        return _render(self.tokenizer, self.chat, [question], ANSWER_PREFIXES["pairwise"])

    def logits(self, texts: list[str]) -> Tensor:
        """``[B, V]`` answer-position logits (left padding, as the judge reads them); keeps gradients."""
        return _next_token_logits(self.model, self.tokenizer, texts, not self.chat)

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        path = Path(path)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        meta = {"kind": "pairwise", "chat": self.chat, "labels": list(_DEFAULT_LABELS["pairwise"]), **(extra or {})}
        (path / META_FILE).write_text(json.dumps(meta, indent=2))
        return path


def orderings(pairs: Sequence[PreferencePair], both: bool, seed: int) -> list[tuple[int, int]]:
    """``(pair index, order)`` examples; order 0 shows the preferred response as A (label 0 = "A"), order 1 as B
    (label 1 = "B"). ``both``: every pair in both orders; else one seeded random order per pair."""
    if both:
        return [(i, order) for i in range(len(pairs)) for order in (0, 1)]
    rng = random.Random(seed)
    return [(i, rng.randrange(2)) for i in range(len(pairs))]


def example_texts(judge: PairwiseJudge, pairs: Sequence[PreferencePair], examples: list[tuple[int, int]]) -> list[str]:
    out = []
    for i, order in examples:
        p = pairs[i]
        a, b = (p.chosen, p.rejected) if order == 0 else (p.rejected, p.chosen)
        out.append(judge.text(p.prompt, a, b))
    return out


def preferred_probabilities(judge: PairwiseJudge, pairs: Sequence[PreferencePair], batch_size: int = 16) -> Tensor:
    """``[N, 2]``: P(judge picks the preferred response) with it first (column 0) and second (column 1), normalized
    over the two labels as ``judge_reward`` reads them; no gradients."""
    examples = orderings(pairs, both=True, seed=0)
    texts = example_texts(judge, pairs, examples)
    with _inference(judge.model):
        probs = torch.cat(
            [
                label_probabilities(judge.logits(texts[s : s + batch_size]), judge.label_ids)
                for s in range(0, len(texts), batch_size)
            ]
        )
    return torch.stack([probs[0::2, 0], probs[1::2, 1]], -1).cpu()


def evaluate_judge(judge: PairwiseJudge, pairs: PairSet, batch_size: int = 16) -> dict[str, float]:
    """``eval/accuracy``, ``eval/consistency``, ``eval/win_accuracy`` on held-out pairs (both orderings)."""
    p = preferred_probabilities(judge, pairs.pairs, batch_size)
    return {f"eval/{k}": float(v) for k, v in position_consistency(p[:, 0], p[:, 1]).items()}


def fit_judge(
    judge: PairwiseJudge,
    train: PairSet,
    *,
    both_orderings: bool,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int = 0,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    held_out: PairSet | None = None,
    log: RunLog | None = None,
) -> PairwiseJudge:
    """Fine-tune ``judge`` on the label token; ``batch_size`` counts judge inputs (orderings), not pairs."""
    examples = orderings(train.pairs, both_orderings, seed)
    params = [p for p in judge.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    rng, step = random.Random(seed), 0
    judge.model.train()
    for epoch in range(epochs):
        rng.shuffle(examples)
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            logits = judge.logits(example_texts(judge, train.pairs, chunk))
            target = torch.tensor([order for _, order in chunk], device=logits.device)
            loss = label_token_loss(logits, judge.label_ids, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            step += 1
            picked = label_probabilities(logits.detach(), judge.label_ids).argmax(-1)
            if log is not None:
                log.log(
                    step,
                    {
                        "loss/rm": float(loss.detach()),
                        "rm/accuracy": float((picked == target).float().mean()),
                        "charts/epoch": epoch + (start + len(chunk)) / len(examples),
                    },
                )
        if held_out is not None and log is not None:
            log.log(step, evaluate_judge(judge, held_out))
    judge.model.eval()
    return judge
