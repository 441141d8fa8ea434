"""The testbed's named rewards, as TRL-style functions ``fn(prompts, completions, **columns) -> list[float]``.

``prompts`` are :class:`~polyreward.testbed.tasks.Prompt` and ``completions``
:class:`~polyreward.testbed.tasks.Completion` objects, so the same functions score every task
variant through a :class:`~polyreward.rewards.RewardSet`.
"""

from __future__ import annotations

from collections.abc import Callable

from polyreward.rewards.budget import hbpo_reward
from polyreward.testbed.vocab import END, TOOL


def _is_correct(prompt, completion) -> bool:
    digits = completion.digits
    return bool(digits) and sum(digits) == prompt.target


def correct(prompts, completions, **_) -> list[float]:
    """1 if the completion's own digits (not injected ones) sum to the target, else 0 (hard)."""
    return [float(_is_correct(p, c)) for p, c in zip(prompts, completions, strict=True)]


def format_ok(prompts, completions, **_) -> list[float]:
    """1 if the completion stops with END after at least one digit and holds only digits (and
    tool calls) before it, else 0 (easy: the same pattern for every prompt)."""
    out = []
    for c in completions:
        tokens = c.policy_tokens
        body = tokens[:-1]
        ok = c.ended and bool(tokens) and tokens[-1] == END and any(t < 10 for t in body)
        out.append(float(ok and all(t < 10 or t == TOOL for t in body)))
    return out


format_ok.__name__ = "format"


def length_budget(slack: int) -> Callable[..., list[float]]:
    """``length``: 1 within the prompt's budget of policy tokens, linear down to 0 at ``budget + slack``."""

    def length(prompts, completions, **_) -> list[float]:
        return [max(0.0, 1.0 - max(0, c.num_tokens - p.budget) / slack) for p, c in zip(prompts, completions, strict=True)]

    return length


def tool_calls(prompts, completions, **_) -> list[float]:
    """The number of TOOL tokens T (a cost; arms weight it negatively or not at all)."""
    return [float(c.tool_calls) for c in completions]


def tool_efficiency(prompts, completions, **_) -> list[float]:
    """HDPO's tool reward ``1 / (T + 1)`` for correct completions, 0 otherwise (arXiv 2604.08545)."""
    return [1.0 / (c.tool_calls + 1) if _is_correct(p, c) else 0.0 for p, c in zip(prompts, completions, strict=True)]


def hbpo_budget(max_length: int, beta: float = 4.0) -> Callable[..., list[float]]:
    """``hbpo``: HBPO's ``R(n | b)`` (arXiv 2507.15844) with ``alpha = 1 / max_length``."""

    def hbpo(prompts, completions, **_) -> list[float]:
        n = [c.num_tokens for c in completions]
        budgets = [float(p.budget) for p in prompts]
        ok = [_is_correct(p, c) for p, c in zip(prompts, completions, strict=True)]
        return hbpo_reward(n, budgets, ok, max_length=max_length, beta=beta, alpha=1 / max_length).tolist()

    return hbpo


def turn_scores(prompt, completion) -> list[float]:
    """Per-turn match of a multi-turn completion: 1 if turn t's digits sum to its target, else 0."""
    scores = []
    for target, turn in zip(prompt.turn_targets, completion.turns(), strict=False):
        digits = [t for t in turn if t < 10]
        scores.append(float(bool(digits) and sum(digits) == target))
    return scores


def turn_match(prompts, completions, **_) -> list[float]:
    """``match``: the trajectory score, the number of matched turns."""
    return [sum(turn_scores(p, c)) for p, c in zip(prompts, completions, strict=True)]


turn_match.__name__ = "match"
