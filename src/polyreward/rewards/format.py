"""Format rewards: tag grammars, Parallel-R1's parallel-thinking grammar, RLVMR's meta-reasoning steps.

- :func:`tag_format_ok` / :func:`format_reward`: ``<think>...</think><answer>...</answer>``-style
  grammars (each tag exactly once, in order; ``strict`` = nothing but whitespace outside the tags).
- :func:`parallel_format_errors`, :func:`parallel_r1_score`, :func:`parallel_r1_reward`:
  Parallel-R1 (arXiv 2509.07980), ported from ``zhengkid/Parallel-R1``
  ``verl/utils/reward_score/math_dapo_accuracy_format_parallel.py``.
- :func:`parse_meta_step`, :func:`meta_reasoning_rewards`, :func:`meta_format_reward`: RLVMR
  (arXiv 2507.22844), ported from the RLVMR code as published in ``zzjweb/digitalhuman`` (``RLVMR/``:
  ``agent_system/environments/env_package/alfworld/projection.py`` and ``rlvmr/core_rlvmr.py``), the
  first author's copy of ``Tencent/DigitalHuman/RLVMR``. The Tencent repository itself was not
  available to check against.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from polyreward.rewards._columns import not_applicable
from polyreward.rewards.answers import answer_reward
from polyreward.rewards.text import Completion, completion_text


# ---------------------------------------------------------------------------------------------- tag grammars
def tag_format_ok(text: str, tags: Sequence[str] = ("think", "answer"), strict: bool = False) -> bool:
    """True when each ``<tag>...</tag>`` of ``tags`` appears exactly once, in the given order, not nested.

    ``strict``: additionally nothing but whitespace before, between and after the blocks (the
    whole-string ``^<think>.*?</think>\\s*<answer>.*?</answer>$`` check of R1-style format rewards).
    """
    end = 0
    for tag in tags:
        opens = [m.start() for m in re.finditer(f"<{re.escape(tag)}>", text)]
        closes = [m.start() for m in re.finditer(f"</{re.escape(tag)}>", text)]
        if len(opens) != 1 or len(closes) != 1 or not end <= opens[0] < closes[0]:
            return False
        end = closes[0] + len(tag) + 3
    if strict:
        blocks = r"\s*".join(f"<{re.escape(t)}>.*?</{re.escape(t)}>" for t in tags)
        return re.fullmatch(rf"\s*{blocks}\s*", text, flags=re.S) is not None
    return True


@dataclasses.dataclass(frozen=True)
class FormatReward:
    """Batched reward: 1.0 when :func:`tag_format_ok`, else 0.0; build it with :func:`format_reward`."""

    tags: tuple[str, ...]
    strict: bool
    name: str

    @property
    def __name__(self) -> str:
        return self.name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Completion], **columns: Any) -> list[float]:
        return [float(tag_format_ok(completion_text(c), self.tags, self.strict)) for c in completions]


def format_reward(tags: Sequence[str] = ("think", "answer"), *, strict: bool = False, name: str = "format") -> FormatReward:
    """1.0 when the completion follows the tag grammar ``tags`` (see :func:`tag_format_ok`), else 0.0."""
    tags = tuple(tags)
    if not tags or any(not re.fullmatch(r"[A-Za-z_][\w.-]*", t) for t in tags):
        raise ValueError(f"format_reward: tags must be non-empty tag names, got {tags!r}")
    if len(set(tags)) != len(tags):
        raise ValueError(f"format_reward: tags must be distinct, got {tags!r}")
    return FormatReward(tags, strict, name)


# ---------------------------------------------------------------------------------------------- Parallel-R1
def parallel_format_errors(text: str) -> list[str]:
    """Problems with Parallel-R1's ``<Parallel>/<Path>/<Summary>`` structure (empty list: format OK).

    Same acceptance as the released ``check_parallel_thinking_format``: tags must nest
    (``</Path>`` closes a ``<Path>``, ``</Parallel>`` a ``<Parallel>``); each ``<Parallel>`` block
    holds at least 2 ``<Path>`` blocks and is followed by a ``<Summary>`` before the next
    ``<Parallel>``; every ``<Summary>`` follows a ``</Parallel>``; #``<Summary>`` = #``</Parallel>``.
    As released, ``</Summary>`` is not checked and a ``<Path>`` outside ``<Parallel>`` is allowed.
    """
    errors: list[str] = []
    stack: list[str] = []
    paths: list[int] = []  # <Path> blocks closed in each open <Parallel>
    summary_expected, summaries = False, 0
    for i, token in enumerate(re.findall(r"</?Parallel>|</?Path>|</?Summary>", text)):
        if token == "<Parallel>":
            stack.append("Parallel")
            paths.append(0)
            summary_expected = False
        elif token == "<Path>":
            stack.append("Path")
        elif token == "</Path>":
            if not stack or stack[-1] != "Path":
                errors.append(f"unexpected </Path> at tag #{i}")
            else:
                stack.pop()
                if paths:
                    paths[-1] += 1
        elif token == "</Parallel>":
            if not stack or stack[-1] != "Parallel":
                errors.append(f"unexpected </Parallel> at tag #{i}")
            else:
                stack.pop()
                count = paths.pop()
                if count < 2:
                    errors.append(f"<Parallel> block closed at tag #{i} with only {count} <Path> blocks")
                summary_expected = True
        elif token == "<Summary>":
            if not summary_expected:
                errors.append(f"<Summary> at tag #{i} does not follow a </Parallel>")
            summary_expected = False
            summaries += 1
    if stack:
        errors.append(f"unclosed tags at the end: {stack}")
    if summary_expected:
        errors.append("missing <Summary> after the last </Parallel>")
    if summaries != text.count("</Parallel>"):
        errors.append(f"{summaries} <Summary> for {text.count('</Parallel>')} </Parallel>")
    return errors


def parallel_r1_score(correct: bool, format_ok: bool, n_parallel: int) -> float:
    """Parallel-R1's released combined reward.

    ``R = R_acc + R_fmt + 1[correct and format_ok]·0.6·ln(1 + n) − 1[not correct and n > 0]·0.1·ln(1 + n)``
    with ``R_acc = ±1``, ``R_fmt = ±0.3`` and ``n`` = number of ``<Parallel>`` blocks.
    """
    if n_parallel < 0:
        raise ValueError(f"parallel_r1_score: n_parallel must be >= 0, got {n_parallel}")
    reward = (1.0 if correct else -1.0) + (0.3 if format_ok else -0.3)
    if correct and format_ok:
        reward += 0.6 * math.log1p(n_parallel)
    if not correct and n_parallel > 0:
        reward -= 0.1 * math.log1p(n_parallel)
    return reward


@dataclasses.dataclass(frozen=True)
class ParallelR1Reward:
    """Batched Parallel-R1 reward; build it with :func:`parallel_r1_reward`."""

    correctness: Callable[..., Sequence[float | None]]
    threshold: float
    name: str

    @property
    def __name__(self) -> str:
        return self.name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Completion], **columns: Any) -> list[float | None]:
        correct = self.correctness(prompts, completions, **columns)
        out: list[float | None] = []
        for completion, value in zip(completions, correct, strict=True):
            if not_applicable(value):
                out.append(None)
                continue
            text = completion_text(completion)
            ok = not parallel_format_errors(text)
            out.append(parallel_r1_score(value >= self.threshold, ok, text.count("<Parallel>")))
        return out


def parallel_r1_reward(
    correctness: Callable[..., Sequence[float | None]] | None = None, *, threshold: float = 1.0, name: str = "parallel_r1"
) -> ParallelR1Reward:
    """Parallel-R1's combined accuracy + format + parallel-count reward (:func:`parallel_r1_score`).

    correctness: a batched reward whose value ``>= threshold`` means correct; default
        ``answer_reward("math", tag=None)`` (math-verify on the last ``\\boxed{}``, reference in the
        ``answer`` column). The released code instead compares the Minerva-normalized "Final
        Answer:" line (or the strict boxed string) within the last 300 characters. ``None`` from it
        gives ``None``.
    The tags are read from the completion text: if ``<Parallel>``, ``<Path>`` and ``<Summary>`` are
    special tokens, decode completions with special tokens kept.
    """
    return ParallelR1Reward(correctness or answer_reward("math", tag=None), threshold, name)


@dataclasses.dataclass(frozen=True)
class ParallelFormatReward:
    """Batched reward: 1.0 when :func:`parallel_format_errors` finds nothing, else 0.0."""

    name: str = "parallel_format"

    @property
    def __name__(self) -> str:
        return self.name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Completion], **columns: Any) -> list[float]:
        return [float(not parallel_format_errors(completion_text(c))) for c in completions]


def parallel_format_reward(name: str = "parallel_format") -> ParallelFormatReward:
    """1.0 when the completion's ``<Parallel>/<Path>/<Summary>`` structure is valid, else 0.0."""
    return ParallelFormatReward(name)


# ---------------------------------------------------------------------------------------------- RLVMR
META_TAGS = ("planning", "reflection", "explore", "monitor")
_REWARDED_TAGS = ("planning", "explore", "reflection")  # the released code's precedence


@dataclasses.dataclass(frozen=True)
class MetaStep:
    """One agent step (one model output) read the RLVMR way.

    valid: the step's format is valid (see :func:`parse_meta_step`).
    tag: ``"planning"``, ``"explore"`` or ``"reflection"`` for a valid step carrying that tag;
        None otherwise (invalid steps and ``<monitor>`` steps, the code's ``"none"`` type).
    actions: every ``<action>...</action>`` content, stripped (a valid step has exactly one).
    available: the action is one of the admissible actions (True when none were given).
    """

    valid: bool
    tag: str | None
    actions: tuple[str, ...]
    available: bool


def parse_meta_step(text: str, admissible_actions: Sequence[str] | None = None, forbid_cjk: bool = True) -> MetaStep:
    """Read one RLVMR step. Valid iff, as in the released ALFWorld/ScienceWorld projection:

    - exactly one ``<action>...</action>`` (case-insensitive);
    - exactly one meta-reasoning block among ``<planning>``, ``<reflection>``, ``<explore>``,
      ``<monitor>`` (complete open/close pairs, case-insensitive), non-empty once inner tags are
      removed, and placed before ``<action>``;
    - no CJK characters (``forbid_cjk``; the released check for English-only environments).
    """
    valid = not (forbid_cjk and re.search(r"[\u4e00-\u9fff]", text))
    actions = tuple(a.strip() for a in re.findall(r"<action>([\s\S]*?)</action>", text, flags=re.I))
    valid = valid and len(actions) == 1
    action_pos = text.lower().find("<action>")
    blocks = [m for tag in META_TAGS for m in re.finditer(rf"<{tag}>.*?</{tag}>", text, flags=re.I | re.S)]
    filled = [m for m in blocks if re.sub(r"<.*?>", "", m.group(0)).strip()]
    valid = valid and len(blocks) == 1 and len(filled) == 1 and text.find(filled[0].group(0)) <= action_pos
    tag = next((t for t in _REWARDED_TAGS if f"<{t}>" in text), None) if valid else None
    available = admissible_actions is None or (len(actions) == 1 and actions[0] in admissible_actions)
    return MetaStep(bool(valid), tag, actions, available)


@dataclasses.dataclass(frozen=True)
class MetaRewards:
    """Per-step RLVMR rewards of one trajectory: ``rewards[T]``, ``tags[T]`` (None = no type), ``valid[T]``."""

    rewards: list[float]
    tags: list[str | None]
    valid: list[bool]


def meta_reasoning_rewards(
    steps: Sequence[str | MetaStep],
    success: bool,
    *,
    admissible_actions: Sequence[Sequence[str]] | None = None,
    planning_reward: float = 1.0,
    exploration_reward: float = 1.0,
    reflection_reward: float = 1.0,
) -> MetaRewards:
    """RLVMR's rule-based meta-reasoning rewards for the ``T`` steps of one trajectory.

    Only valid steps earn anything:

    - ``planning``: ``planning_reward`` if the episode succeeded, else 0;
    - ``explore``: ``exploration_reward`` if its action differs from the action of every earlier
      valid step (not a repeat), else 0;
    - ``reflection``: ``reflection_reward`` if the previous step failed (invalid format or an
      action that is not admissible; a first step counts as after a failure) and the action changed,
      else 0;
    - ``monitor`` and invalid steps: 0, tag None.

    The released trainer then subtracts ``0.1`` from the outcome reward of each invalid step (the
    ``invalid_action_penalty``, see ``valid``) and normalizes these step rewards per (prompt, tag)
    group, added to the group-normalized episode return with weight ``step_advantage_w``
    (``rlvmr/core_rlvmr.py``). Defaults 1.0 are the released config's. Actions are compared after
    stripping whitespace (the released code compares the raw tag contents).
    """
    if admissible_actions is not None and len(admissible_actions) != len(steps):
        raise ValueError(f"meta_reasoning_rewards: {len(admissible_actions)} admissible-action lists for {len(steps)} steps")
    parsed = [
        s if isinstance(s, MetaStep) else parse_meta_step(s, None if admissible_actions is None else admissible_actions[t])
        for t, s in enumerate(steps)
    ]
    rewards = []
    for t, step in enumerate(parsed):
        reward = 0.0
        if step.tag == "planning":
            reward = planning_reward if success else 0.0
        elif step.tag == "explore":
            repeated = any(p.valid and p.actions == step.actions for p in parsed[:t])
            reward = 0.0 if repeated else exploration_reward
        elif step.tag == "reflection":
            prev = parsed[t - 1] if t > 0 else None
            after_failure = prev is None or not (prev.valid and prev.available)
            changed = prev is None or prev.actions != step.actions
            reward = reflection_reward if after_failure and changed else 0.0
        rewards.append(reward)
    return MetaRewards(rewards, [s.tag for s in parsed], [s.valid for s in parsed])


@dataclasses.dataclass(frozen=True)
class MetaFormatReward:
    """Batched reward: 1.0 for a valid RLVMR step (:func:`parse_meta_step`), else 0.0."""

    forbid_cjk: bool
    name: str

    @property
    def __name__(self) -> str:
        return self.name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Completion], **columns: Any) -> list[float]:
        return [float(parse_meta_step(completion_text(c), forbid_cjk=self.forbid_cjk).valid) for c in completions]


def meta_format_reward(*, forbid_cjk: bool = True, name: str = "meta_format") -> MetaFormatReward:
    """1.0 when a step output is a valid RLVMR step, else 0.0.

    RLVMR's invalid-action penalty is ``-0.1 * (1 - meta_format)``: give this reward weight 0.1
    and add 0.1 to the outcome, or use it as is for a 0/1 format channel.
    """
    return MetaFormatReward(forbid_cjk, name)
