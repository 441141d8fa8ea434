"""Any reasoning-gym dataset as a task (prompt rows) and a reward (the dataset's own ``score_answer``).

``reasoning_gym_task("countdown", size=50, seed=0)`` gives rows with ``prompt``, ``question``,
``answer``, ``metadata`` (JSON text) and ``rg_source`` (JSON text: dataset name, size, seed, config
and row index). :func:`reasoning_gym_reward` reads ``rg_source``, rebuilds the row's entry with
``reasoning_gym.create_dataset(name, size=, seed=, **config)[index]`` (deterministic; cached per
process) and returns ``dataset.score_answer(answer=<extracted answer>, entry=entry)`` in [0, 1].
Carrying the recipe instead of the entry keeps the column a plain string (Arrow and pickling never
alter the metadata's types), and the reward works in a worker process that never saw the rows.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from polyreward.rewards._columns import column, sample_error
from polyreward.rewards.answers import extract_answer
from polyreward.rewards.text import Completion, completion_text

SOURCE_COLUMN = "rg_source"


def reasoning_gym_task(
    name: str, size: int = 100, seed: int = 0, *, system_prompt: str | None = "default", **config: Any
) -> list[dict[str, Any]]:
    """``size`` rows of the reasoning-gym dataset ``name`` (``config``: the dataset's config fields).

    Each row: ``prompt`` (chat messages ``[system, user]``, or the bare question when
    ``system_prompt=None``), ``question``, ``answer`` (the dataset's reference, which some tasks do
    not need for scoring), ``metadata`` (JSON text) and ``rg_source`` (JSON text, what the reward
    needs). ``system_prompt``: a key of ``reasoning_gym.utils.SYSTEM_PROMPTS`` (``"default"`` asks
    for ``<answer>...</answer>``) or the text itself.
    """
    import reasoning_gym
    from reasoning_gym.utils import SYSTEM_PROMPTS

    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"reasoning_gym_task: seed must be an int (rows are rebuilt from it), got {seed!r}")
    try:
        config_json = json.dumps(config, sort_keys=True)
    except TypeError as err:
        raise ValueError(f"reasoning_gym_task: config must be JSON-serializable to travel with the rows: {err}") from err
    if json.loads(config_json) != config:
        raise ValueError(f"reasoning_gym_task: config {config!r} changes in a JSON round trip (use lists, not tuples)")
    dataset = reasoning_gym.create_dataset(name, size=size, seed=seed, **config)
    system = SYSTEM_PROMPTS.get(system_prompt, system_prompt) if system_prompt is not None else None
    rows = []
    for index in range(size):
        entry = dataset[index]
        question = entry["question"]
        source = {"dataset": name, "size": size, "seed": seed, "config": config, "index": index}
        rows.append(
            {
                "prompt": question
                if system is None
                else [
                    {"role": "system", "content": system},
                    {"role": "user", "content": question},
                ],
                "question": question,
                "answer": entry["answer"],
                "metadata": json.dumps(entry["metadata"], default=repr),
                SOURCE_COLUMN: json.dumps(source, sort_keys=True),
            }
        )
    return rows


@functools.lru_cache(maxsize=64)
def _dataset(name: str, size: int, seed: int, config_json: str) -> Any:
    import reasoning_gym

    return reasoning_gym.create_dataset(name, size=size, seed=seed, **json.loads(config_json))


@functools.lru_cache(maxsize=65536)
def _entry(source_json: str) -> tuple[Any, dict[str, Any]]:
    """``(dataset, entry)`` for one ``rg_source`` value."""
    source = json.loads(source_json)
    missing = {"dataset", "size", "seed", "config", "index"} - set(source)
    if missing:
        raise ValueError(f"rg_source lacks {sorted(missing)}")
    dataset = _dataset(source["dataset"], source["size"], source["seed"], json.dumps(source["config"], sort_keys=True))
    return dataset, dataset[source["index"]]


@dataclasses.dataclass(frozen=True)
class ReasoningGymReward:
    """Batched reward: reasoning-gym's ``score_answer`` on the extracted answer; see :func:`reasoning_gym_reward`."""

    tag: str | None
    column: str
    name: str

    @property
    def __name__(self) -> str:
        return self.name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Completion], **columns: Any) -> list[float | None]:
        sources = column(self.name, columns, self.column, len(completions))
        questions = columns.get("question") if isinstance(columns.get("question"), (list, tuple)) else None
        out: list[float | None] = []
        for i, (completion, source) in enumerate(zip(completions, sources, strict=True)):
            if source is None:
                out.append(None)
                continue
            dataset, entry = self._entry(i, source)
            if questions is not None and questions[i] is not None and questions[i] != entry["question"]:
                raise sample_error(
                    self.name,
                    i,
                    self.column,
                    "the rebuilt entry's question differs from the row's 'question' (another reasoning-gym version?)",
                )
            answer = extract_answer(completion_text(completion), self.tag, boxed=False)
            out.append(float(dataset.score_answer(answer=answer, entry=entry)))
        return out

    def _entry(self, index: int, source: Any) -> tuple[Any, dict[str, Any]]:
        if not isinstance(source, str):
            raise sample_error(self.name, index, self.column, f"expected rg_source JSON text, got {type(source).__name__}")
        try:
            return _entry(source)
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise sample_error(self.name, index, self.column, f"cannot rebuild the entry: {err}") from err


def reasoning_gym_reward(
    *, tag: str | None = "answer", column: str = SOURCE_COLUMN, name: str = "reasoning_gym"
) -> ReasoningGymReward:
    """Score completions with the reasoning-gym dataset that made each row.

    tag: the answer is the content of the last ``<tag>...</tag>`` (``None``: the whole completion).
        Without one, the dataset scores ``None`` itself (countdown gives 0.01, most give 0.0).
    column: the rows' ``rg_source`` column (see :func:`reasoning_gym_task`); ``None`` for a sample
        gives ``None``. When a ``question`` column is present it must equal the rebuilt entry's
        question, which catches rows made by another reasoning-gym version.
    """
    import reasoning_gym  # noqa: F401  (fail at construction when it is not installed)

    return ReasoningGymReward(tag, column, name)


def entry_for(source: str | Mapping[str, Any]) -> dict[str, Any]:
    """The reasoning-gym entry (question, answer, metadata) behind one ``rg_source`` value."""
    text = source if isinstance(source, str) else json.dumps(dict(source), sort_keys=True)
    return _entry(text)[1]
