"""The testbed's token vocabulary: ten digits, a few structural tokens and budget tokens."""

from __future__ import annotations

from collections.abc import Sequence

DIGITS = tuple(range(10))
END = 10  # "."  stops the completion
FILL = 11  # "_"  a filler token: harmless to the sum, breaks the format, costs length
TOOL = 12  # "?"  asks the environment for the hidden argument
SEP = 13  # "|"  ends a turn (multi-turn task)
HIDDEN = 14  # "#"  a prompt argument that is not shown
BOS = 15
PAD = 16
BUDGET_BASE = 17  # BUDGET_BASE + i: "answer within budgets[i] tokens"
VOCAB_SIZE = 21
TOKEN_NAMES = [*map(str, DIGITS), ".", "_", "?", "|", "#", "<s>", "<pad>", "<b0>", "<b1>", "<b2>", "<b3>"]


def render(tokens: Sequence[int]) -> str:
    """Tokens as a readable string, e.g. ``"<s>3 4|7 ."``."""
    return " ".join(TOKEN_NAMES[t] for t in tokens)
