"""Answer rewards: extract a final answer from a completion and compare it with a reference column.

Four comparison modes, one factory (:func:`answer_reward`):

- ``"exact"``: normalized string equality (strip, case-fold, collapse whitespace);
- ``"choice"``: the option letter of a multiple-choice answer ("(B)", "B.", "Answer: B", ...);
- ``"numeric"``: numbers within a relative/absolute tolerance, string match when the reference is
  not a number (the "chart" reward of Mixed-R1, arXiv 2505.24164; tolerance default from ChartQA's
  relaxed accuracy, 5 %);
- ``"math"``: symbolic equivalence with ``math-verify`` (``parse`` + ``verify``).

math-verify bounds its own run time with ``signal.alarm``, which only works in the main thread of
the main interpreter; elsewhere it raises ``ValueError``. :func:`math_equivalent` therefore passes
its timeout only when called from the main thread, and none otherwise (a reward set's inline
``timeout_s`` thread, a thread pool). In a process pool (``RewardComponent(executor="process")``)
the workers call it from their main thread, so the timeout applies there.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import threading
from collections.abc import Sequence
from typing import Any, Literal

from polyreward.rewards._columns import column, sample_error
from polyreward.rewards.text import Completion, completion_text, extract_tag

AnswerMode = Literal["exact", "choice", "numeric", "math"]
MODES = ("exact", "choice", "numeric", "math")


# ---------------------------------------------------------------------------------------------- extraction
def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces matched; None if none."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start)
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j].strip()
    return None  # unbalanced braces: no complete box


def extract_answer(text: str, tag: str | None = "answer", boxed: bool = True) -> str | None:
    """The final answer in ``text``, or None when there is none.

    - ``tag``: content of the last ``<tag>...</tag>``; if it holds a ``\\boxed{}``, its content.
    - ``boxed``: without a tag match (or with ``tag=None``), the content of the last ``\\boxed{}``.
    - ``tag=None, boxed=False``: the whole text is the answer.
    """
    if tag is None and not boxed:
        return text.strip()
    if tag is not None:
        inside = extract_tag(text, tag)
        if inside is not None:
            return (last_boxed(inside) or inside) if boxed else inside
    return last_boxed(text) if boxed else None


# ---------------------------------------------------------------------------------------------- exact
def normalize_answer(text: str) -> str:
    """Strip, case-fold and collapse runs of whitespace to one space."""
    return " ".join(text.split()).casefold()


def exact_match(prediction: str, reference: str) -> bool:
    """Equality after :func:`normalize_answer`."""
    return normalize_answer(prediction) == normalize_answer(reference)


# ---------------------------------------------------------------------------------------------- choice
def extract_choice(text: str, letters: str = "ABCDEFGHIJ") -> str | None:
    """The option letter of a multiple-choice answer (upper case), or None when it is unclear.

    Tried in order: the whole answer is one letter ("B", "(b)", "[B].", "**B**", "\\text{B}");
    an explicit phrase ("Answer: B", "the answer is (B)", "option C"; the last one wins); a leading
    option ("B. Paris", "(B) Paris", "B) Paris", "B: Paris"); a single distinct bracketed letter
    anywhere ("... so (C)"). Bare letters inside prose are not read ("A cat" is not option A), and
    two different bracketed letters without a phrase give None.
    """
    ups = re.escape(letters.upper())
    lows = re.escape(letters.lower())
    clean = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}", r"\1", text).replace("$", "").replace("*", "")
    clean = clean.strip()
    whole = re.fullmatch(rf"[(\[]?\s*([{ups}{lows}])\s*[)\]]?\s*[.:]?", clean)
    if whole:
        return whole.group(1).upper()
    phrase = re.findall(
        rf"(?i:answer|option|choice)(?:\s*(?i:is|:|=))*\s*(?i:option\s*)?(?:([{ups}])|[(\[]([{ups}{lows}])[)\]])(?![A-Za-z])",
        clean,
    )
    if phrase:
        return "".join(phrase[-1]).upper()
    leading = re.match(rf"(?:([{ups}])|\(([{ups}{lows}])\))[.):](?:\s|$)", clean) or re.match(
        rf"\(([{ups}{lows}])\)(?:\s|$)", clean
    )
    if leading:
        return "".join(g for g in leading.groups() if g).upper()
    bracketed = {m.upper() for m in re.findall(rf"[(\[]([{ups}{lows}])[)\]]", clean)}
    return bracketed.pop() if len(bracketed) == 1 else None


# ---------------------------------------------------------------------------------------------- numeric
_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?"


def parse_number(text: str, strict: bool = False) -> float | None:
    """A number written in ``text``, or None.

    Accepts ``1,234.5``, ``-0.5``, ``1e-3``, ``$12``, ``45%`` (read as 45), ``3/4`` and
    ``\\frac{3}{4}``. With ``strict=True`` the whole text (after removing ``$``, ``%``, ``\\%`` and
    surrounding spaces) must be one number; otherwise the last number in the text is used, so
    "about 12.5 million" gives 12.5 (units and scale words are ignored).
    """
    clean = text.replace("\\%", "").replace("%", "").replace("$", "").replace("\\!", "").replace("{,}", ",").strip()
    clean = re.sub(r"\\[dt]?frac\{\s*([^{}]+?)\s*\}\{\s*([^{}]+?)\s*\}", r"\1/\2", clean)
    whole = _to_float(clean)
    if whole is not None or strict:
        return whole
    for token in reversed(re.findall(rf"{_NUMBER}(?:\s*/\s*{_NUMBER})?", clean)):
        value = _to_float(token)
        if value is not None:
            return value
    return None


def _to_float(token: str) -> float | None:
    """A whole-string number or fraction ``a/b``; None otherwise (and for a zero denominator)."""
    token = token.strip()
    if "/" in token:
        parts = token.split("/")
        if len(parts) != 2:
            return None
        num, den = _to_float(parts[0]), _to_float(parts[1])
        return num / den if num is not None and den not in (None, 0.0) else None
    if not token or not re.fullmatch(_NUMBER, token) or not re.search(r"\d", token):
        return None
    return float(token.replace(",", ""))


def numeric_match(prediction: float, reference: float, rel_tol: float = 0.05, abs_tol: float = 0.0) -> bool:
    """``|prediction - reference| <= max(rel_tol * |reference|, abs_tol)`` (tolerance relative to the reference)."""
    return abs(prediction - reference) <= max(rel_tol * abs(reference), abs_tol)


# ---------------------------------------------------------------------------------------------- math
def signal_timeout(timeout_s: int | None) -> int | None:
    """The timeout math-verify may use here: ``timeout_s`` in the main thread, None elsewhere.

    math-verify's timeout is ``signal.alarm``, which raises ``ValueError`` outside the main thread
    of the main interpreter. Off the main thread, bound the reward with the reward set's
    ``timeout_s`` or run it on the process pool instead.
    """
    return timeout_s if threading.current_thread() is threading.main_thread() else None


@functools.lru_cache(maxsize=4096)
def _parse_math(text: str, timeout_s: int | None) -> tuple[Any, ...]:
    """math-verify's parse; bare LaTeX such as ``(x+1)^2`` is retried inside ``$...$``."""
    from math_verify import parse

    parsed = parse(text, parsing_timeout=timeout_s)
    if not parsed and "$" not in text:
        parsed = parse(f"${text}$", parsing_timeout=timeout_s)
    return tuple(parsed)


def math_equivalent(prediction: str, reference: str, timeout_s: int | None = 5) -> bool:
    """True when ``prediction`` is mathematically equal to ``reference`` according to math-verify.

    Both are parsed with ``math_verify.parse`` (LaTeX and plain expressions) and compared with
    ``math_verify.verify(gold, prediction)``. An unparseable prediction, or a comparison that times
    out (math-verify logs a warning), is not equivalent. Raises ``ValueError`` when the reference
    cannot be parsed. ``timeout_s`` (whole seconds) applies only in the main thread, see
    :func:`signal_timeout`.
    """
    from math_verify import verify

    timeout = signal_timeout(timeout_s)
    gold = _parse_reference(reference, timeout)
    answer = _parse_math(prediction, timeout)
    return bool(answer) and verify(list(gold), list(answer), timeout_seconds=timeout)


def _parse_reference(reference: str, timeout: int | None) -> tuple[Any, ...]:
    gold = _parse_math(reference, timeout)
    if not gold:
        raise ValueError(f"math-verify cannot parse the reference {reference!r}")
    return gold


# ---------------------------------------------------------------------------------------------- the reward
@dataclasses.dataclass(frozen=True)
class AnswerReward:
    """Batched reward ``fn(prompts, completions, **columns) -> list[float | None]``; build it with
    :func:`answer_reward`. A picklable object, so it runs on a process pool."""

    mode: AnswerMode
    tag: str | None
    boxed: bool
    column: str
    rel_tol: float
    abs_tol: float
    letters: str
    timeout_s: int | None
    name: str

    @property
    def __name__(self) -> str:
        return self.name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Completion], **columns: Any) -> list[float | None]:
        references = column(self.name, columns, self.column, len(completions))
        out: list[float | None] = []
        for i, (completion, reference) in enumerate(zip(completions, references, strict=True)):
            refs = self._references(i, reference)
            if refs is None:
                out.append(None)
                continue
            answer = extract_answer(completion_text(completion), self.tag, self.boxed)
            try:
                out.append(max(self.score(answer, ref) for ref in refs))
            except ValueError as err:
                raise sample_error(self.name, i, self.column, str(err)) from err
        return out

    def _references(self, index: int, reference: Any) -> list[str | float] | None:
        """The acceptable references of one sample (a list column means "any of these"); None: not applicable."""
        if reference is None:
            return None
        refs = list(reference) if isinstance(reference, (list, tuple)) else [reference]
        for ref in refs:
            if isinstance(ref, bool) or not isinstance(ref, (str, int, float)):
                raise sample_error(self.name, index, self.column, f"expected a string or number, got {type(ref).__name__}")
            if isinstance(ref, float) and not math.isfinite(ref):
                raise sample_error(self.name, index, self.column, f"reference is {ref}")
        if not refs:
            raise sample_error(self.name, index, self.column, "empty list of references")
        return refs

    def score(self, answer: str | None, reference: str | float) -> float:
        """1.0 or 0.0 for one extracted answer (None: no answer found) against one reference.

        Raises ``ValueError`` when the reference cannot be read in this mode.
        """
        if self.mode == "choice":
            letter = extract_choice(str(reference), self.letters)
            if letter is None:
                raise ValueError(f"no option letter ({self.letters}) in the reference {reference!r}")
            return float(answer is not None and extract_choice(answer, self.letters) == letter)
        if answer is None:
            if self.mode == "math":  # still check the reference: a bad one is an error, not a 0
                _parse_reference(str(reference), signal_timeout(self.timeout_s))
            return 0.0
        if self.mode == "exact":
            return float(exact_match(answer, str(reference)))
        if self.mode == "numeric":
            target = float(reference) if isinstance(reference, (int, float)) else parse_number(reference, strict=True)
            if target is None:  # not a number: the chart reward falls back to a string match
                return float(exact_match(answer, str(reference)))
            value = parse_number(answer)
            return float(value is not None and numeric_match(value, target, self.rel_tol, self.abs_tol))
        return float(math_equivalent(answer, str(reference), self.timeout_s))


def answer_reward(
    mode: AnswerMode = "exact",
    *,
    tag: str | None = "answer",
    boxed: bool = True,
    column: str = "answer",
    rel_tol: float = 0.05,
    abs_tol: float = 0.0,
    letters: str = "ABCDEFGHIJ",
    timeout_s: int | None = 5,
    name: str | None = None,
) -> AnswerReward:
    """A reward that is 1.0 when the completion's final answer matches the ``column`` reference, else 0.0.

    mode: ``"exact"`` | ``"choice"`` | ``"numeric"`` | ``"math"`` (see the module docstring).
    tag, boxed: where the answer is read, see :func:`extract_answer`. No answer found scores 0.0.
    column: dataset column with the reference (a string or number; a list means "any of these").
        ``None`` for a sample gives ``None`` (not applicable). A reference that cannot be read in
        this mode (no option letter, math-verify cannot parse it, a wrong type) raises
        ``ValueError`` naming the sample and column.
    rel_tol, abs_tol: numeric mode, ``|pred - ref| <= max(rel_tol * |ref|, abs_tol)``.
    letters: choice mode, the valid option letters.
    timeout_s: math mode, math-verify's per-call timeout in whole seconds (main thread only).
    name: the reward's name (default ``"answer_<mode>"``).
    """
    if mode not in MODES:
        raise ValueError(f"answer_reward: mode={mode!r} is not one of {list(MODES)}")
    if rel_tol < 0 or abs_tol < 0:
        raise ValueError(f"answer_reward: tolerances must be >= 0, got rel_tol={rel_tol}, abs_tol={abs_tol}")
    if not letters or not letters.isalpha():
        raise ValueError(f"answer_reward: letters must be a non-empty string of letters, got {letters!r}")
    if timeout_s is not None and (not isinstance(timeout_s, int) or timeout_s < 1):
        raise ValueError(f"answer_reward: timeout_s must be a whole number of seconds >= 1 or None, got {timeout_s!r}")
    if mode == "math":
        import math_verify  # noqa: F401  (fail at construction, not at the first batch)
    return AnswerReward(mode, tag, boxed, column, rel_tol, abs_tol, letters, timeout_s, name or f"answer_{mode}")
