"""Tool-call rewards: ToolRL (arXiv 2504.13958) and MatchTIR (arXiv 2601.10712).

A tool call is a mapping ``{"name": str, "parameters" | "arguments": dict | JSON string}``; a call
without arguments has arguments ``{}``. ToolRL (``qiancheng0/ToolRL``, ``rlla.py``) scores one
response against the ground-truth calls: a format reward in ``{0, 1}`` and a correctness reward in
``[-3, 3]``. MatchTIR (``quchangle1/MatchTIR``, ``reward_score/tool.py``) scores every call of a
multi-turn trajectory against the ground truth by bipartite matching (hard) or optimal transport
(soft), and gives each turn the mean of its calls' rewards (an answer turn gets the answer F1).
"""

from __future__ import annotations

import dataclasses
import json
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from polyreward.rewards._columns import RewardFn, RewardInputError, bad_entry, bind, column, text_of
from polyreward.rewards.text import completion_text

ToolCall = Mapping[str, Any]
Solver = Literal["greedy", "hungarian"]
Assignment = Literal["hard", "ot"]


# ---------------------------------------------------------------------------------------------- calls
def call_parts(call: ToolCall) -> tuple[str, dict[str, Any]]:
    """``(name, arguments)`` of a tool call; raises ``ValueError`` when it is not a usable call."""
    if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
        raise ValueError(f"a tool call is a mapping with a string 'name', got {call!r}")
    args = call.get("parameters", call.get("arguments", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError as err:
            raise ValueError(f"tool call {call['name']!r}: arguments are not valid JSON ({err})") from err
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise ValueError(f"tool call {call['name']!r}: arguments must be an object, got {type(args).__name__}")
    return call["name"], dict(args)


def _normal(call: ToolCall) -> dict[str, Any]:
    name, args = call_parts(call)
    return {"name": name, "arguments": args}


def multiset_jaccard(a: Sequence[Any], b: Sequence[Any]) -> float:
    """``|a ∩ b| / (|a| + |b| − |a ∩ b|)`` with multiset counts; equal lists (both empty too) give 1.

    This is ``match_score`` of ToolRL and MatchTIR.
    """
    a, b = list(a), list(b)
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    common = sum((Counter(a) & Counter(b)).values())
    return common / (len(a) + len(b) - common)


def _param_score(gt_args: Mapping[str, Any], pred_args: Mapping[str, Any]) -> float:
    """Key Jaccard plus the number of ground-truth values the prediction reproduces exactly."""
    same = sum(1.0 for k, v in gt_args.items() if k in pred_args and pred_args[k] == v)
    return multiset_jaccard(list(gt_args), list(pred_args)) + same


def parse_tool_calls(text: str) -> list[dict[str, Any]]:
    """Every well-formed call in ``<tool_call>…</tool_call>`` blocks of ``text`` (MatchTIR's parsing).

    A block holds one JSON object (Qwen style) or one object per line (ToolRL style). Malformed
    calls are skipped, as the released ``parse_qwen`` does. Returns ``[{"name", "arguments"}]``.
    """
    calls = []
    for block in re.findall(r"<tool_call>(.*?)</tool_call>", text, flags=re.S):
        try:
            objects = [json.loads(block.strip())]
        except json.JSONDecodeError:
            objects = []
            for line in block.splitlines():
                try:
                    objects.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        for obj in objects:
            for candidate in obj if isinstance(obj, list) else [obj]:
                try:
                    name, args = call_parts(candidate)
                except ValueError:
                    continue
                calls.append({"name": name, "arguments": args})
    return calls


# ---------------------------------------------------------------------------------------------- ToolRL
@dataclasses.dataclass(frozen=True)
class ToolRLTarget:
    """What a ToolRL response must contain: ``calls`` (None = no tool call expected) and a ``<response>``."""

    calls: list[dict[str, Any]] | None
    response: bool = False


def parse_toolrl_target(value: str | Sequence[ToolCall] | Mapping[str, Any]) -> ToolRLTarget:
    """A ground truth as ToolRL's answer text, a list of calls, or ``{"tool_calls": [...], "response": bool}``.

    In answer text the calls sit in one ``<tool_call>`` block, one JSON object per line, and a
    ``<response>`` tag means a response is expected. Raises ``ValueError`` on a malformed ground truth.
    """
    if isinstance(value, str):
        calls = None
        if "<tool_call>" in value:
            block = value.split("<tool_call>")[1].split("</tool_call>")[0].strip()
            calls = [_normal(json.loads(line)) for line in block.split("\n")]
        return ToolRLTarget(calls, "<response>" in value)
    if isinstance(value, Mapping):
        calls = value.get("tool_calls")
        calls = None if calls is None else [_normal(c) for c in calls]
        return ToolRLTarget(calls, bool(value.get("response", False)))
    if isinstance(value, Sequence):
        return ToolRLTarget([_normal(c) for c in value], False)
    raise ValueError(f"expected answer text, a list of tool calls or a mapping, got {type(value).__name__}")


_TOOLRL_PATTERNS = {  # (tool call expected, response expected) -> the released regex
    (False, True): r"^<think>.*?</think>\n<response>.*?</response>$",
    (True, False): r"^<think>.*?</think>\n<tool_call>\n.*?\n</tool_call>$",
    (True, True): r"^<think>.*?</think>\n<tool_call>\n.*?\n</tool_call>\n<response>.*?</response>$",
    (False, False): r"^<think>.*?</think>$",
}


def toolrl_format(text: str, target: ToolRLTarget, rmin: float = 0.0, rmax: float = 1.0) -> float:
    """ToolRL format reward: ``rmax`` if ``text`` has exactly the parts ``target`` needs, else ``rmin``.

    The parts are ``<think>…</think>`` then, as required, ``<tool_call>\\n…\\n</tool_call>`` and
    ``<response>…</response>``, separated by single newlines, with each required tag appearing once.
    ``text`` is stripped first (the released code strips the decoded response).
    """
    text = text.strip()
    needs_call, needs_response = target.calls is not None, target.response
    if not re.search(_TOOLRL_PATTERNS[needs_call, needs_response], text, flags=re.S):
        return rmin
    tags = ["<tool_call>", "</tool_call>"] if needs_call else []
    tags += ["<response>", "</response>"] if needs_response else []
    return rmax if all(text.count(tag) == 1 for tag in tags) else rmin


def parse_toolrl_calls(text: str) -> list[dict[str, Any]] | None:
    """The calls of a ToolRL response (first ``<tool_call>`` block, one JSON object per line), or None.

    None means a parse failure, which ToolRL scores ``rmin``: missing tags, a line that is not JSON
    (a blank line included), or an object that is not a call.
    """
    if "<tool_call>" not in text or "</tool_call>" not in text:
        return None
    block = text.split("<tool_call>")[1].split("</tool_call>")[0].strip()
    calls = []
    for line in block.split("\n"):
        try:
            name, args = call_parts(json.loads(line))
        except ValueError:  # json.JSONDecodeError is a ValueError
            return None
        calls.append({"name": name, "arguments": args})
    return calls


def toolrl_correctness(
    gt_calls: Sequence[ToolCall], pred_calls: Sequence[ToolCall] | None, rmin: float = -3.0, rmax: float = 3.0
) -> float:
    """ToolRL tool-call correctness in ``[rmin, rmax]``.

    ``pred_calls=None`` (a parse failure) gives ``rmin``; equal call lists give ``rmax``. Otherwise
    ``S = J(gt names, pred names) + Σ_g max_p [J(keys g, keys p) + #{k: p[k] == g[k]}]`` with each
    prediction of the same (case-sensitive) name used at most once, greedily in ground-truth order,
    ``Smax = 1 + Σ_g (1 + |params g|)`` and the reward is ``(rmax − rmin)·S/Smax + rmin``.
    ``J`` is :func:`multiset_jaccard`.
    """
    if pred_calls is None:
        return rmin
    gt = [call_parts(c) for c in gt_calls]
    try:
        pred = [call_parts(c) for c in pred_calls]
    except ValueError:
        return rmin
    if gt == pred:
        return rmax
    score = multiset_jaccard([name for name, _ in gt], [name for name, _ in pred])
    score_max, used = 1.0, set()
    for name, gt_args in gt:
        score_max += 1.0 + len(gt_args)
        best, best_index = 0.0, -1
        for i, (pred_name, pred_args) in enumerate(pred):
            if i in used or pred_name != name:
                continue
            candidate = _param_score(gt_args, pred_args)
            if candidate > best:
                best, best_index = candidate, i
        if best_index >= 0:
            used.add(best_index)
            score += best
    return (rmax - rmin) * score / score_max + rmin


@dataclasses.dataclass(frozen=True)
class _ToolRLConfig:
    name: str
    target_column: str
    rmin: float
    rmax: float
    kind: Literal["format", "correctness"]


def toolrl_rewards(
    target_column: str = "answer",
    correctness_range: tuple[float, float] = (-3.0, 3.0),
    format_range: tuple[float, float] = (0.0, 1.0),
    names: tuple[str, str] = ("toolrl_format", "toolrl_correctness"),
) -> RewardFn:
    """ToolRL as two batched rewards ``(format_fn, correctness_fn)``, kept apart so each is a named column.

    ``target_column`` holds per sample a ground truth accepted by :func:`parse_toolrl_target` (None:
    not applicable, both rewards give None). Correctness is None when no tool call is expected (the
    released code gives 0.0 there, which a weighted sum treats the same way).
    """
    return tuple(
        bind(_toolrl_batch, _ToolRLConfig(name, target_column, lo, hi, kind), name)
        for name, (lo, hi), kind in zip(names, (format_range, correctness_range), ("format", "correctness"), strict=True)
    )


def _toolrl_batch(cfg: _ToolRLConfig, prompts: Any, completions: Sequence[Any], **columns: Any) -> list[float | None]:
    targets = column(cfg.name, columns, cfg.target_column, len(completions))
    out: list[float | None] = []
    for i, (completion, raw) in enumerate(zip(completions, targets, strict=True)):
        if raw is None:
            out.append(None)
            continue
        try:
            target = parse_toolrl_target(raw)
        except (ValueError, TypeError) as err:
            raise bad_entry(cfg.name, cfg.target_column, i, f"a ToolRL ground truth ({err})", raw) from err
        text = text_of(cfg.name, i, completion)
        if cfg.kind == "format":
            out.append(toolrl_format(text, target, cfg.rmin, cfg.rmax))
        elif target.calls is None:
            out.append(None)
        else:
            out.append(toolrl_correctness(target.calls, parse_toolrl_calls(text.strip()), cfg.rmin, cfg.rmax))
    return out


# ---------------------------------------------------------------------------------------------- MatchTIR
def tool_call_similarity(pred: ToolCall, gt: ToolCall) -> float:
    """MatchTIR similarity of a predicted and a ground-truth call, in ``[0, 1]``.

    0 when the names differ (case-insensitive); else
    ``[1 + J(keys gt, keys pred) + #{k in gt: pred[k] == gt[k]}] / (2 + |keys gt|)``.
    """
    pred_name, pred_args = call_parts(pred)
    gt_name, gt_args = call_parts(gt)
    if pred_name.lower() != gt_name.lower():
        return 0.0
    return (1.0 + _param_score(gt_args, pred_args)) / (2.0 + len(gt_args))


def tool_similarity_matrix(preds: Sequence[ToolCall], gts: Sequence[ToolCall]) -> np.ndarray:
    """``S[P, G]`` with ``S[i, j] = tool_call_similarity(preds[i], gts[j])``."""
    out = np.zeros((len(preds), len(gts)))
    for i, pred in enumerate(preds):
        for j, gt in enumerate(gts):
            out[i, j] = tool_call_similarity(pred, gt)
    return out


def hard_matching(similarity: Any, solver: Solver = "greedy") -> np.ndarray:
    """One-to-one matching of predictions (rows) to ground truths (columns) of ``S[P, G]``.

    Returns ``match[P]``: the matched column, or -1. Only pairs with ``S > 0`` are matched.
    ``"greedy"`` is the released MatchTIR rule (take the highest remaining pair, ties in row-major
    order); ``"hungarian"`` maximizes the total similarity (``scipy.optimize.linear_sum_assignment``).
    """
    s = np.asarray(similarity, dtype=float)
    if s.ndim != 2 or not np.isfinite(s).all():
        raise ValueError(f"similarity must be a finite [P, G] matrix, got shape {s.shape}")
    match = np.full(s.shape[0], -1)
    if s.size == 0:
        return match
    if solver == "greedy":
        taken = np.zeros(s.shape[1], dtype=bool)
        for flat in np.argsort(-s, axis=None, kind="stable"):
            i, j = divmod(int(flat), s.shape[1])
            if s[i, j] <= 0:
                break
            if match[i] < 0 and not taken[j]:
                match[i], taken[j] = j, True
    elif solver == "hungarian":
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(s, maximize=True)
        keep = s[rows, cols] > 0
        match[rows[keep]] = cols[keep]
    else:
        raise ValueError(f"solver={solver!r} is not one of ['greedy', 'hungarian']")
    return match


def assign_hard(similarity: Any, solver: Solver = "greedy", unmatched_penalty: float = 0.0) -> np.ndarray:
    """MatchTIR hard-assignment call rewards ``r[P]``: the matched similarity, or ``unmatched_penalty``.

    The released training call uses ``unmatched_penalty=0`` (the function's own default is −0.5).
    """
    s = np.asarray(similarity, dtype=float)
    match = hard_matching(s, solver)
    matched = s[np.arange(len(match)), np.maximum(match, 0)] if s.size else np.zeros(len(match))
    return np.where(match >= 0, matched, unmatched_penalty)


def assign_ot(similarity: Any, reg: float = 0.1, max_iter: int = 1000, tol: float = 1e-9) -> np.ndarray:
    """MatchTIR soft-assignment call rewards ``r[P] = Σ_j T_ij S_ij``.

    ``T`` is POT's entropic Sinkhorn plan for cost ``−S`` with uniform marginals ``1/P`` and ``1/G``
    (``ot.sinkhorn`` defaults, as released). Each row carries mass ``1/P``, so rewards are small.
    No ground-truth calls (``G = 0``) gives zeros.
    """
    import ot

    s = np.asarray(similarity, dtype=float)
    if s.ndim != 2:
        raise ValueError(f"similarity must be a [P, G] matrix, got shape {s.shape}")
    p, g = s.shape
    if p == 0 or g == 0:
        return np.zeros(p)
    plan = ot.sinkhorn(np.full(p, 1.0 / p), np.full(g, 1.0 / g), -s, reg, numItermax=max_iter, stopThr=tol)
    return (plan * s).sum(axis=1)


def _normalize_answer(text: str) -> list[str]:
    text = text.lower()
    for mark in string.punctuation:
        text = text.replace(mark, " ")
    return text.split()


def answer_f1(pred: str, gt: str) -> float:
    """Token-set F1 after lowercasing and replacing punctuation by spaces (MatchTIR's answer reward)."""
    pred_tokens, gt_tokens = set(_normalize_answer(pred)), set(_normalize_answer(gt))
    common = len(pred_tokens & gt_tokens)
    if not common:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gt_tokens)
    return 2 * precision * recall / (precision + recall)


def _turn_text_and_calls(turn: str | Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """A turn is a text or an assistant message (content plus optional OpenAI-style ``tool_calls``)."""
    if isinstance(turn, str):
        return turn, parse_tool_calls(turn)
    text = completion_text([turn])
    calls = parse_tool_calls(text)
    for entry in turn.get("tool_calls") or []:
        try:
            name, args = call_parts(entry.get("function", entry) if isinstance(entry, Mapping) else entry)
        except ValueError:
            continue
        calls.append({"name": name, "arguments": args})
    return text, calls


def matchtir_turn_rewards(
    turns: Sequence[str | Mapping[str, Any]],
    gt_calls: Sequence[ToolCall],
    gt_answer: str,
    assignment: Assignment = "hard",
    solver: Solver = "greedy",
    unmatched_penalty: float = 0.0,
    reg: float = 0.1,
) -> list[float]:
    """MatchTIR per-turn rewards ``r[T]`` of one trajectory.

    All calls of the trajectory are matched against all ground-truth calls at once (hard:
    :func:`assign_hard`, soft: :func:`assign_ot`). A turn's reward is the mean of its calls' rewards;
    a turn containing ``<answer>…</answer>`` gets :func:`answer_f1` instead (its calls are ignored);
    a turn with neither gets 0.
    """
    if assignment not in ("hard", "ot"):
        raise ValueError(f"assignment={assignment!r} is not one of ['hard', 'ot']")
    rewards = [0.0] * len(turns)
    calls, owner = [], []
    for t, turn in enumerate(turns):
        text, turn_calls = _turn_text_and_calls(turn)
        answer = re.search(r"<answer>(.*?)</answer>", text, flags=re.S)
        if answer:
            rewards[t] = answer_f1(answer.group(1), gt_answer)
            continue
        calls.extend(turn_calls)
        owner.extend([t] * len(turn_calls))
    s = tool_similarity_matrix(calls, gt_calls)
    call_rewards = assign_ot(s, reg) if assignment == "ot" else assign_hard(s, solver, unmatched_penalty)
    sums, counts = np.zeros(len(turns)), np.zeros(len(turns))
    np.add.at(sums, owner, call_rewards)
    np.add.at(counts, owner, 1)
    return [float(sums[t] / counts[t]) if counts[t] else rewards[t] for t in range(len(turns))]


def split_turns(completion: Any, separator: str | None = None) -> list[str | Mapping[str, Any]]:
    """The assistant turns of a completion: assistant messages of a chat, or a string split on ``separator``."""
    if isinstance(completion, str):
        return completion.split(separator) if separator else [completion]
    if isinstance(completion, Sequence):
        messages = [m for m in completion if isinstance(m, Mapping)]
        return [m for m in messages if m.get("role") == "assistant"] or messages
    raise TypeError(f"expected a completion string or a list of chat messages, got {type(completion).__name__}")


@dataclasses.dataclass(frozen=True)
class _MatchTIRConfig:
    name: str
    calls_column: str
    answer_column: str
    assignment: Assignment
    solver: Solver
    unmatched_penalty: float
    reg: float
    turn_separator: str | None


def matchtir_turn_reward(
    calls_column: str = "tool_calls",
    answer_column: str = "answer",
    assignment: Assignment = "hard",
    solver: Solver = "greedy",
    unmatched_penalty: float = 0.0,
    reg: float = 0.1,
    turn_separator: str | None = None,
    name: str | None = None,
) -> Callable[..., list[list[float] | None]]:
    """Batched MatchTIR turn rewards: ``fn(prompts, completions, **columns) -> list[list[float] | None]``.

    Not a scalar reward: each sample gets one reward per assistant turn (see :func:`split_turns`;
    string completions are split on ``turn_separator``, e.g. ``"\\n<|im_start|>assistant\\n"``), for
    ``RewardBatch.from_turns(pad_turns(out))``. ``calls_column`` holds the ground-truth calls (a list
    or its JSON text) and ``answer_column`` the answer; a sample with either None gets None.
    """
    if assignment not in ("hard", "ot"):
        raise ValueError(f"assignment={assignment!r} is not one of ['hard', 'ot']")
    if solver not in ("greedy", "hungarian"):
        raise ValueError(f"solver={solver!r} is not one of ['greedy', 'hungarian']")
    name = name or ("matchtir_ot" if assignment == "ot" else f"matchtir_{solver}")
    cfg = _MatchTIRConfig(name, calls_column, answer_column, assignment, solver, unmatched_penalty, reg, turn_separator)
    return bind(_matchtir_batch, cfg, name)


def _matchtir_batch(
    cfg: _MatchTIRConfig, prompts: Any, completions: Sequence[Any], **columns: Any
) -> list[list[float] | None]:
    all_calls = column(cfg.name, columns, cfg.calls_column, len(completions))
    answers = column(cfg.name, columns, cfg.answer_column, len(completions))
    out: list[list[float] | None] = []
    for i, (completion, gt_calls, gt_answer) in enumerate(zip(completions, all_calls, answers, strict=True)):
        if gt_calls is None or gt_answer is None:
            out.append(None)
            continue
        if not isinstance(gt_answer, str):
            raise bad_entry(cfg.name, cfg.answer_column, i, "the answer text", gt_answer)
        try:
            gt = json.loads(gt_calls) if isinstance(gt_calls, str) else list(gt_calls)
            for call in gt:
                call_parts(call)
        except (ValueError, TypeError) as err:
            raise bad_entry(cfg.name, cfg.calls_column, i, f"a list of tool calls ({err})", gt_calls) from err
        try:
            turns = split_turns(completion, cfg.turn_separator)
        except TypeError as err:
            raise RewardInputError(f"reward {cfg.name!r}: sample {i}: {err}") from err
        out.append(matchtir_turn_rewards(turns, gt, gt_answer, cfg.assignment, cfg.solver, cfg.unmatched_penalty, cfg.reg))
    return out


def pad_turns(turn_rewards: Sequence[Sequence[float] | None]) -> list[list[float | None]]:
    """Ragged per-turn rewards as a rectangular ``[N, T_max]`` list padded with None (no such turn).

    A None sample becomes a row of None. The result feeds ``RewardBatch.from_turns``.
    """
    width = max((len(r) for r in turn_rewards if r is not None), default=0)
    return [[None] * width if r is None else [*map(float, r), *[None] * (width - len(r))] for r in turn_rewards]
