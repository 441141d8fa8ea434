"""Built-in rewards by name, for configs: ``{kind, name?, weight?, on_error?, fallback?, timeout_s?, executor?, params?}``.

``weight`` is a number or a schedule mapping, e.g. ``{linear: {start: 0.0, end: 1.0, steps: 100}}``
or ``{step: {boundaries: [30], values: [1.0, 3.0]}}``; ``kind: toolrl`` gives two rewards
(format and correctness) that share the spec's settings.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from polyreward.rewards import code, geometry, judges, length, similarity, tables, tools, vision_r1
from polyreward.rewards import format as formats
from polyreward.rewards.answers import answer_reward
from polyreward.rewards.component import RewardComponent
from polyreward.rewards.reasoning_gym import reasoning_gym_reward
from polyreward.rewards.schedules import Alternating, Constant, Linear, Piecewise, Schedule, Step

KINDS: dict[str, Callable[..., Any]] = {
    "answer": answer_reward,
    "format": formats.format_reward,
    "parallel_r1": formats.parallel_r1_reward,
    "parallel_format": formats.parallel_format_reward,
    "meta_format": formats.meta_format_reward,
    "overlong": length.overlong_reward,
    "target_length": length.target_length_reward,
    "word_budget": length.word_budget_reward,
    "hbpo_length": length.hbpo_length_reward,
    "reasoning_gym": reasoning_gym_reward,
    "toolrl": tools.toolrl_rewards,
    "box_iou": geometry.box_iou_reward,
    "temporal_iou": geometry.temporal_iou_reward,
    "temporal_r1": geometry.temporal_r1_reward,
    "vision_r1": vision_r1.vision_r1_reward,
    "sentence_similarity": similarity.sentence_similarity_reward,
    "ot_alignment": similarity.ot_alignment_reward,
    "table_structure": tables.table_structure_reward,
    "table2latex": tables.table2latex_structure_reward,
    "code_tests": code.code_test_reward,
    "generated_code": code.generated_reward,
    "judge": judges.judge_reward,
    "reward_model": judges.reward_model_reward,
}
SPEC_KEYS = {"kind", "name", "weight", "on_error", "fallback", "timeout_s", "executor", "params"}
SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": Constant,
    "linear": Linear,
    "step": Step,
    "piecewise": Piecewise,
    "alternating": Alternating,
}


def build_rewards(specs: list[Mapping[str, Any]]) -> list[RewardComponent]:
    """Reward components from config specs; errors name the spec's position and the bad key or value."""
    components = []
    for index, spec in enumerate(specs):
        where = f"rewards[{index}]"
        if not isinstance(spec, Mapping) or "kind" not in spec:
            raise ValueError(f"{where}: expected a mapping with a 'kind' (one of {sorted(KINDS)}), got {spec!r}")
        unknown = sorted(set(spec) - SPEC_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}; allowed: {sorted(SPEC_KEYS)}")
        kind = spec["kind"]
        if kind not in KINDS:
            close = difflib.get_close_matches(str(kind), KINDS, n=3)
            raise ValueError(
                f"{where}: unknown reward kind {kind!r}"
                + (f"; did you mean {close}?" if close else "")
                + f" Known: {sorted(KINDS)}"
            )
        params = dict(spec.get("params") or {})
        if "name" in spec and kind != "toolrl":
            params["name"] = spec["name"]
        try:
            made = KINDS[kind](**params)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where} ({kind}): {err}") from err
        settings = {k: spec[k] for k in ("on_error", "fallback", "timeout_s", "executor") if k in spec}
        weight = _weight(spec.get("weight", 1.0), where)
        for fn in made if isinstance(made, tuple) else (made,):
            components.append(RewardComponent(fn, weight=weight, **settings))
    return components


def _weight(value: Any, where: str) -> float | Schedule:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, Mapping) and len(value) == 1:
        ((kind, args),) = value.items()
        if kind in SCHEDULES and isinstance(args, Mapping):
            args = {
                k: tuple(tuple(p) if isinstance(p, list) else p for p in v) if isinstance(v, list) else v
                for k, v in args.items()
            }
            try:
                return SCHEDULES[kind](**args)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{where}.weight: {err}") from err
    raise ValueError(f"{where}.weight: expected a number or one of {{{', '.join(SCHEDULES)}: {{...}}}}, got {value!r}")
