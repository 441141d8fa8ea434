"""ExIt task buffers: Exploratory Iteration ("Bootstrapping Task Spaces for Self-Improvement",
Jiang, Lupu, Bachrach, arXiv 2509.04575) as a prompt-choosing controller.

ExIt trains only single-step self-iterations. Every group the trainer samples gives a candidate
task instance: one of its completions becomes the "current response" of a new self-iteration
instance (the base row's request, that response, and an instruction to improve it). The instance
enters a bounded buffer with the priority of the group that produced it: the learnability, the
variance of the group's returns. Each prompt slot of a step is drawn from the buffer with
probability ``mix`` (by priority), otherwise it is the prompt source's next row. A replayed
instance gets the variance of its new group as its priority, and its own completions seed
instances one level deeper, up to ``max_depth``.

Pure parts (:func:`buffer_probabilities`, :func:`evict`, :func:`self_iteration_prompt`,
:func:`self_iteration_row`, :func:`improvement`) take plain values; :class:`ExIt` holds the buffer.
See docs/controllers.md for what is confirmed from the paper and what is our choice.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
from collections.abc import Callable, Sequence
from typing import Any, Literal

from torch import Tensor

from polyreward.batch import RewardBatch
from polyreward.lm.controllers import Controller, Probe, StepPlan, check_reward, group_values, register
from polyreward.rewards._columns import RewardFn, bind, column
from polyreward.rewards.selection import reward_variance

DEFAULT_INSTRUCTION = "Improve your current response to this request."
PRIORITIES = ("variance", "std", "uniform")
Priority = Literal["variance", "std", "uniform"]


# ---------------------------------------------------------------------------------------------- pure parts
def buffer_probabilities(scores: Sequence[float], rule: Priority = "variance") -> list[float]:
    """Sampling probability of each buffer entry from its learnability ``scores`` (group variances).

    ``variance``: ``p_i = S_i / sum S``; ``std``: ``p_i ∝ sqrt(S_i)``; ``uniform``: ``1 / n``.
    All-zero (or non-finite) scores fall back to uniform. An empty buffer gives ``[]``.
    """
    n = len(scores)
    if n == 0:
        return []
    if rule == "uniform":
        return [1.0 / n] * n
    values = [max(float(s), 0.0) if math.isfinite(s) else 0.0 for s in scores]
    if rule == "std":
        values = [math.sqrt(v) for v in values]
    total = sum(values)
    return [v / total for v in values] if total > 0 else [1.0 / n] * n


def evict(entries: list[dict[str, Any]], capacity: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(kept, evicted)``: keep at most ``capacity`` entries, dropping the lowest ``score`` first and,
    among equal scores, the oldest (lowest ``id``). ``kept`` keeps the input order."""
    if len(entries) <= capacity:
        return list(entries), []
    order = sorted(entries, key=lambda e: (e["score"], e["id"]))
    dropped = {e["id"] for e in order[: len(entries) - capacity]}
    return [e for e in entries if e["id"] not in dropped], [e for e in order if e["id"] in dropped]


def self_iteration_prompt(prompt: Any, previous: str, instruction: str = DEFAULT_INSTRUCTION) -> Any:
    """The prompt of a self-iteration instance: the request, the current response and the instruction.

    A plain-string prompt becomes ``"{instruction}\\n\\n## Request:\\n{prompt}\\n\\n## Current
    response:\\n{previous}"``; chat messages get the response as an assistant turn and the
    instruction as a new user turn (the partial history a multi-turn episode would have).
    """
    if isinstance(prompt, str):
        return f"{instruction}\n\n## Request:\n{prompt}\n\n## Current response:\n{previous}"
    messages = copy.deepcopy(list(prompt))
    return [*messages, {"role": "assistant", "content": previous}, {"role": "user", "content": instruction}]


def self_iteration_row(
    row: dict[str, Any],
    prompt_column: str,
    previous: str | None,
    depth: int,
    previous_return: float | None = None,
    instruction: str = DEFAULT_INSTRUCTION,
) -> dict[str, Any]:
    """``row`` as a depth-``depth`` instance: same answer and columns, the prompt extended by
    ``previous`` (depth 0: the base row unchanged), plus ``exit_depth``, ``previous_attempt`` and
    ``previous_return`` columns (None at depth 0) that rewards may read."""
    out = {**row, "exit_depth": depth, "previous_attempt": previous, "previous_return": previous_return}
    if depth > 0:
        out[prompt_column] = self_iteration_prompt(row[prompt_column], previous or "", instruction)
    return out


def improvement(new: float, previous: float) -> float:
    """Normalized improvement of a return in ``[0, 1]``: ``max(0, (new - previous) / (1 - previous))``;
    0 when the previous attempt already scored ``>= 1`` (nothing left to improve)."""
    if previous >= 1.0:
        return 0.0
    return max(0.0, (new - previous) / (1.0 - previous))


def improvement_reward(fn: Callable[..., list[float | None]], name: str | None = None) -> RewardFn:
    """Wrap a reward with values in ``[0, 1]`` so that self-iteration rows (``previous_return`` not
    None) score :func:`improvement` over the previous attempt; base rows keep the plain value.
    ``previous_return`` is the controller's return, so wrap the reward named in ``exit.reward``."""
    name = name or f"{getattr(fn, '__name__', 'reward')}_improvement"
    return bind(_improvement_batch, (fn, name), name)


def _improvement_batch(config, prompts: Any, completions: Sequence[Any], **columns: Any) -> list[float | None]:
    fn, name = config
    previous = column(name, columns, "previous_return", len(completions))
    values = fn(prompts, completions, **columns)
    return [
        v if p is None or v is None or (isinstance(v, float) and math.isnan(v)) else improvement(float(v), float(p))
        for v, p in zip(values, previous, strict=True)
    ]


# ---------------------------------------------------------------------------------------------- controller
@register("exit")
@dataclasses.dataclass
class ExIt(Controller):
    """ExIt self-iteration buffer (see the module docstring).

    ``reward``: the return whose group variance is the priority (None: the weighted sum of all
    rewards); ``buffer_size``: capacity (lowest priority, then oldest, evicted first); ``mix``:
    probability that a prompt slot comes from the buffer; ``priority``: ``variance`` / ``std`` /
    ``uniform`` sampling; ``min_variance``: groups at or below it add no instance, and replayed
    instances whose new group falls to it leave the buffer; ``max_depth``: deepest instance kept;
    ``instruction``: the improve instruction of :func:`self_iteration_prompt`.
    """

    chooses_rows = True
    reward: str | None = None
    buffer_size: int = 128
    mix: float = 0.5
    priority: Priority = "variance"
    min_variance: float = 0.0
    max_depth: int = 4
    instruction: str = DEFAULT_INSTRUCTION
    buffer: list[dict[str, Any]] = dataclasses.field(default_factory=list, init=False)
    next_id: int = dataclasses.field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.reward is not None and (not isinstance(self.reward, str) or not self.reward):
            raise ValueError(f"reward: a reward name or None (the weighted sum), got {self.reward!r}")
        if isinstance(self.buffer_size, bool) or not isinstance(self.buffer_size, int) or self.buffer_size < 1:
            raise ValueError(f"buffer_size: must be an integer >= 1, got {self.buffer_size!r}")
        if not 0.0 <= self.mix <= 1.0:
            raise ValueError(f"mix: a probability in [0, 1], got {self.mix!r}")
        if self.priority not in PRIORITIES:
            raise ValueError(f"priority: one of {list(PRIORITIES)}, got {self.priority!r}")
        if not self.min_variance >= 0:
            raise ValueError(f"min_variance: must be >= 0, got {self.min_variance!r}")
        if isinstance(self.max_depth, bool) or not isinstance(self.max_depth, int) or self.max_depth < 1:
            raise ValueError(f"max_depth: must be an integer >= 1, got {self.max_depth!r}")
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise ValueError(f"instruction: a non-empty string, got {self.instruction!r}")
        self._sources: list[int | None] = []

    def bind(self, rewards, data, seed: int) -> None:
        if self.reward is not None:
            check_reward(rewards, self.reward, self.kind, "reward")
        self._data, self._seed = data, seed

    # ------------------------------------------------------------------ plan: draw the step's rows
    def draw(self, rng: random.Random, size: int) -> list[dict[str, Any] | None]:
        """For each of ``size`` slots, a buffer entry (probability ``mix``, by priority, no entry
        twice in a step) or None (a base row)."""
        pool = list(self.buffer)
        picks: list[dict[str, Any] | None] = []
        for _ in range(size):
            if pool and rng.random() < self.mix:
                probs = buffer_probabilities([e["score"] for e in pool], self.priority)
                picks.append(pool.pop(rng.choices(range(len(pool)), weights=probs)[0]))
            else:
                picks.append(None)
        return picks

    def plan(self, step: int, plan: StepPlan, probe: Probe) -> dict[str, float]:
        rng = random.Random(self._seed * 1_000_003 + step)
        base = plan.indices if plan.indices is not None else self._data.indices(plan.position, plan.size)
        picks = self.draw(rng, plan.size)
        column_name, rows_in = self._data.prompt_column, self._data.rows
        indices, rows = [], []
        for i, entry in zip(base, picks, strict=True):
            if entry is None:
                indices.append(i)
                rows.append(self_iteration_row(rows_in[i], column_name, None, 0))
            else:
                indices.append(entry["index"])
                rows.append(
                    self_iteration_row(
                        rows_in[entry["index"]],
                        column_name,
                        entry["previous"],
                        entry["depth"],
                        entry["previous_return"],
                        self.instruction,
                    )
                )
        plan.indices, plan.rows = indices, rows
        self._sources = [None if e is None else e["id"] for e in picks]
        from_buffer = sum(e is not None for e in picks)
        return {
            "exit/from_buffer": float(from_buffer),
            "exit/from_buffer_frac": from_buffer / len(picks),
            "exit/mean_depth": sum(r["exit_depth"] for r in rows) / len(rows),
        }

    # ------------------------------------------------------------------ observe: grow and rescore
    def returns(self, batch: RewardBatch) -> Tensor:
        """``[P, G]`` returns of the step's groups (``reward``, or the weighted sum of all rewards)."""
        if self.reward is not None:
            return group_values(batch, self.reward)
        return batch.weighted_sum().reshape(batch.num_groups, -1)

    def observe(self, step: int, batch: RewardBatch, indices: list[int], rows, texts) -> dict[str, float]:
        returns = self.returns(batch).double()
        variance = reward_variance(returns).tolist()
        rng = random.Random(self._seed * 1_000_003 + step + 11)
        g = returns.shape[1]
        by_id = {e["id"]: e for e in self.buffer}
        sources = self._sources if len(self._sources) == len(indices) else [None] * len(indices)
        added = 0
        for p, (index, row, source) in enumerate(zip(indices, rows, sources, strict=True)):
            s = variance[p]
            if source in by_id and math.isfinite(s):
                by_id[source]["score"] = s  # the replayed instance's own learnability now
            depth = int(row.get("exit_depth") or 0)
            if not math.isfinite(s) or s <= self.min_variance or depth + 1 > self.max_depth:
                continue
            k = rng.randrange(g)
            value = float(returns[p, k])
            self.buffer.append(
                {
                    "id": self.next_id,
                    "index": int(index),
                    "depth": depth + 1,
                    "previous": texts[p * g + k],
                    "previous_return": value if math.isfinite(value) else None,
                    "score": s,
                    "born": step,
                }
            )
            self.next_id, added = self.next_id + 1, added + 1
        before = len(self.buffer)
        self.buffer = [e for e in self.buffer if e["score"] > self.min_variance]
        dropped = before - len(self.buffer)
        self.buffer, evicted = evict(self.buffer, self.buffer_size)
        self._sources = []
        scores = [e["score"] for e in self.buffer]
        return {
            "exit/buffer_size": float(len(self.buffer)),
            "exit/added": float(added),
            "exit/evicted": float(len(evicted)),
            "exit/dropped_flat": float(dropped),
            "exit/priority_mean": sum(scores) / len(scores) if scores else 0.0,
            "exit/buffer_max_depth": float(max((e["depth"] for e in self.buffer), default=0)),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": copy.deepcopy(self.buffer), "next_id": self.next_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer = copy.deepcopy(list(state.get("buffer", [])))
        self.next_id = int(state.get("next_id", 0))
