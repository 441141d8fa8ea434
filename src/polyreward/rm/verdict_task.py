"""A verdict task for the GRPO trainer: the policy learns to judge preference pairs.

UnifiedReward-Think (arXiv 2505.03318) and BR-RM ("Think Twice", arXiv 2510.23596) train a generative reward model
with GRPO: the model reads a prompt and two responses, (optionally) reasons, and gives a verdict; the reward is
whether the verdict matches the known preference, with a format check. Here:

- rows: every pair twice, preferred response in slot A (``label = "A"``) and in slot B (``label = "B"``), so the
  policy cannot score by always naming one slot. The prompt is the question of ``judge_reward(mode="pairwise")``
  (``TEMPLATES["pairwise"]``); ``reasoning`` replaces its last sentence by a ``<think>`` / ``<answer>`` format.
- rewards: ``verdict_correct`` = 1 when the parsed verdict equals ``label``, else 0 (an unparseable completion is
  a wrong verdict, not a missing reward); ``verdict_format`` = 1 when the completion is exactly the expected
  format (direct: the letter alone; reasoning: ``<think>...</think><answer>X</answer>``), else 0.

``TrainConfig.task``: ``"verdict:<pairs file | synthetic>"`` (answer directly) or ``"verdict_think:<...>"``
(reason first). ``synthetic`` draws ``task_size // 2`` generated sentiment pairs (``task_size`` rows).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from polyreward.rewards._model_io import _prompt_text
from polyreward.rewards.judges import _PAIRWISE_Q, TEMPLATES
from polyreward.rewards.text import completion_text, extract_tag
from polyreward.rm.data import PreferencePair, load_pairs, sentiment_pairs

TASK_KINDS = {"verdict": False, "verdict_think": True}  # task prefix -> reasoning first
LABELS = ("A", "B")
THINK_QUESTION = (
    "Which response answers the last user turn better? First reason step by step inside <think></think>, then "
    "give the letter of the better response (A or B) inside <answer></answer>."
)
_VERDICT = re.compile(r"\s*\(?([AB])\)?\.?\s*")
_THINK_FORMAT = re.compile(r"\s*<think>.+?</think>\s*<answer>\s*[AB]\s*</answer>\s*", re.S)


def is_verdict_task(task: str) -> bool:
    return task.split(":", 1)[0] in TASK_KINDS and ":" in task


def verdict_prompt(prompt: Any, response_a: Any, response_b: Any, reasoning: bool = False) -> str:
    """The judge question of ``judge_reward(mode="pairwise")`` for one ordering (``reasoning``: think, then answer)."""
    a, b = completion_text(response_a), completion_text(response_b)
    template = TEMPLATES["pairwise"]
    if reasoning:
        template = template.removesuffix(_PAIRWISE_Q) + THINK_QUESTION
    return template.format(prompt=_prompt_text(prompt), response=a, response_a=a, response_b=b)


def verdict_rows(pairs: Sequence[PreferencePair], reasoning: bool = False) -> list[dict[str, Any]]:
    """Two rows per pair, ``{"prompt": str, "label": "A" | "B"}``: the preferred response first, then second."""
    rows = []
    for p in pairs:
        rows.append({"prompt": verdict_prompt(p.prompt, p.chosen, p.rejected, reasoning), "label": "A"})
        rows.append({"prompt": verdict_prompt(p.prompt, p.rejected, p.chosen, reasoning), "label": "B"})
    return rows


def parse_verdict(completion: Any) -> str | None:
    """``"A"`` / ``"B"``: the content of the last ``<answer>`` tag, or else the whole completion, when it is one
    letter (optionally in parentheses or followed by a period); None otherwise."""
    text = completion_text(completion)
    tagged = extract_tag(text, "answer")
    match = _VERDICT.fullmatch(text if tagged is None else tagged)
    return match.group(1) if match else None


def verdict_correct(prompts, completions, label=None, **_) -> list[float | None]:
    """1.0 when the parsed verdict equals the row's ``label`` ("A"/"B"), else 0.0; None where the label is None."""
    if label is None:
        raise ValueError("verdict_correct needs a 'label' column ('A' or 'B' per completion)")
    out: list[float | None] = []
    for i, (completion, want) in enumerate(zip(completions, label, strict=True)):
        if want is not None and want not in LABELS:
            raise ValueError(f"verdict_correct: label of completion {i} must be 'A' or 'B', got {want!r}")
        out.append(None if want is None else float(parse_verdict(completion) == want))
    return out


def verdict_format(reasoning: bool = False):
    """The reward ``verdict_format``: 1.0 for exactly the letter (``reasoning``: ``<think>..</think><answer>X</answer>``)."""
    pattern = _THINK_FORMAT if reasoning else _VERDICT

    def verdict_format(prompts, completions, **_) -> list[float]:
        return [float(pattern.fullmatch(completion_text(c)) is not None) for c in completions]

    return verdict_format


def verdict_task(task: str, size: int, seed: int) -> tuple[list[dict[str, Any]], list]:
    """``(rows, default rewards)`` for ``"verdict:<source>"`` / ``"verdict_think:<source>"`` (see the module doc)."""
    kind, _, source = task.partition(":")
    if kind not in TASK_KINDS or not source:
        raise ValueError(f"task {task!r}: expected 'verdict:<pairs file or synthetic>' or 'verdict_think:<...>'")
    generated = source == "synthetic"
    pairs = sentiment_pairs(max(1, size // 2), seed=seed).pairs.pairs if generated else load_pairs(source).pairs
    reasoning = TASK_KINDS[kind]
    return verdict_rows(pairs, reasoning), [verdict_correct, verdict_format(reasoning)]
