"""Complementary RL for language models (Muhtar, Liu et al., "Complementary Reinforcement Learning",
Alibaba / HKUST, arXiv 2603.17621, 2026): an actor and an experience extractor co-evolve.

Both roles are :class:`~polyreward.lm.trainer.Trainer` instances on the same base model, driven by
the multi-role round loop of :mod:`polyreward.lm.roles` (checkpoints and resume of both roles and
of the experience bank). One round:

actor prompts, each with the bank's ``retrieve`` most similar lessons -> actor samples ``G``
answers (outcome reward; the actor learns on this batch) -> one trajectory per question goes to the
extractor, which writes ``G_e`` lessons -> for every lesson that parses the actor samples ``G``
answers again with the lesson added -> extractor reward ``lesson_gain = success with the lesson -
success without it`` (paired: same question, same retrieved lessons) and ``lesson_format`` (the
lesson parses), two named components -> both learn; the best lesson per question with a gain above
``min_gain`` enters the bank.

The abstract states the two objectives (actor: sparse outcome reward; extractor: whether its
distilled experience contributes to the actor's success). The paired-difference form of that
contribution, the retrieval by token Jaccard similarity and the bank policy are this library's
choices, not checked against the paper (docs/self-play.md).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from typing import Any, Literal

from polyreward.config import ConfigError, option
from polyreward.lm.config import TrainConfig
from polyreward.lm.roles import (
    RoleLoop,
    RoleLoopConfig,
    check_counts,
    group_rates,
    load_role,
    prefixed,
    role_config,
    run_from_cli,
    score_each,
)
from polyreward.lm.selfplay import jaccard
from polyreward.lm.tasks import arithmetic_rows, correct
from polyreward.lm.trainer import Trainer
from polyreward.rewards import RewardComponent

# ---------------------------------------------------------------------------------------------- lessons and the bank

_LESSON = re.compile(r"<lesson>(.*?)</lesson>", re.DOTALL)


def parse_lesson(text: str, max_chars: int = 300) -> str | None:
    """The text inside the first ``<lesson>...</lesson>``, stripped; ``None`` when missing, empty or longer
    than ``max_chars`` (a lesson is short advice, not a transcript)."""
    match = _LESSON.search(text)
    lesson = match.group(1).strip() if match else ""
    return lesson if lesson and len(lesson) <= max_chars else None


@dataclasses.dataclass
class Experience:
    """One stored lesson: its text, the token set of the question it came from, its measured gain."""

    lesson: str
    key: list[int]
    gain: float
    round: int


class ExperienceBank:
    """At most ``capacity`` lessons; the oldest leaves first. ``retrieve`` ranks by token Jaccard
    similarity to the question (newer first among ties)."""

    def __init__(self, capacity: int):
        self.capacity, self.items = capacity, []

    def add(self, item: Experience) -> None:
        self.items = [*self.items, item][-self.capacity :]

    def retrieve(self, key: set[int], k: int) -> list[str]:
        if k == 0:
            return []
        ranked = sorted(range(len(self.items)), key=lambda i: (-jaccard(key, set(self.items[i].key)), -i))
        return [self.items[i].lesson for i in ranked[:k]]

    def __len__(self) -> int:
        return len(self.items)


def extractor_rewards() -> list[RewardComponent]:
    """``lesson_format`` (1 when the lesson parses) and ``lesson_gain`` (success with - without; 0 when
    it does not parse): TRL-style functions of the per-lesson columns."""

    def lesson_format(prompts, completions, lesson_parsed, **kwargs) -> list[float]:
        return [1.0 if ok else 0.0 for ok in lesson_parsed]

    def lesson_gain(prompts, completions, lesson_parsed, success_with, success_without, **kwargs) -> list[float]:
        rows = zip(lesson_parsed, success_with, success_without, strict=True)
        return [w - wo if ok else 0.0 for ok, w, wo in rows]

    return [RewardComponent(lesson_format), RewardComponent(lesson_gain)]


# ---------------------------------------------------------------------------------------------- tasks


@dataclasses.dataclass(frozen=True)
class ExperienceTask:
    """What Complementary RL needs of a task; every piece is pluggable.

    actor_rows: rows with a ``prompt`` and the actor rewards' columns.
    with_lessons: ``(row, lessons) -> row`` whose prompt carries the lessons.
    extractor_prompt: ``(row, attempt text, success) -> prompt`` asking for a lesson.
    key: the text of a row that retrieval compares (e.g. the question).
    """

    name: str
    actor_rows: list[dict[str, Any]]
    actor_rewards: list
    with_lessons: Callable[[dict, list[str]], dict]
    extractor_prompt: Callable[[dict, str, float], Any]
    key: Callable[[dict], str]
    parse: Callable[[str], str | None] = parse_lesson
    success_reward: str = "correct"


EXTRACTOR_SYSTEM = "You review a calculator's attempt and write one short lesson for next time inside <lesson></lesson>."


def arithmetic_experience(size: int, seed: int) -> ExperienceTask:
    """The built-in arithmetic task; lessons go into the system message."""

    def with_lessons(row: dict, lessons: list[str]) -> dict:
        if not lessons:
            return row
        system = row["prompt"][0]["content"] + "\nLessons from earlier attempts:\n" + "\n".join(f"- {x}" for x in lessons)
        return {**row, "prompt": [{"role": "system", "content": system}, *row["prompt"][1:]]}

    def extractor_prompt(row: dict, attempt: str, success: float) -> list[dict[str, str]]:
        verdict = "correct" if success >= 1.0 else "wrong"
        question = row["prompt"][-1]["content"]
        return [
            {"role": "system", "content": EXTRACTOR_SYSTEM},
            {"role": "user", "content": f"Question: {question}\nAttempt: {attempt}\nThe attempt was {verdict}."},
        ]

    rows = arithmetic_rows(size, seed)
    return ExperienceTask(
        "arithmetic", rows, [correct], with_lessons, extractor_prompt, lambda r: r["prompt"][-1]["content"]
    )


# ---------------------------------------------------------------------------------------------- config

_ROLE_DEFAULTS = {
    "actor": {"estimator": "grpo", "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 16},
    "extractor": {"estimator": "grpo", "group_size": 2, "max_new_tokens": 32},
}


@dataclasses.dataclass
class ComplementaryConfig(RoleLoopConfig):
    trainer: Literal["complementary"] = option("complementary", "which trainer reads the config")
    task: Literal["arithmetic"] = option("arithmetic", "actor task: 'arithmetic' (built-in)")
    task_size: int = option(1000, "task rows generated")
    retrieve: int = option(2, "lessons from the bank added to each actor prompt")
    bank_capacity: int = option(256, "lessons kept (the oldest leave first)")
    min_gain: float = option(0.0, "a lesson enters the bank when its gain is above this")
    actor: dict[str, Any] = option({}, "TrainConfig overrides for the actor (group_size = answers per prompt)")  # noqa: RUF009
    extractor: dict[str, Any] = option({}, "TrainConfig overrides for the extractor (group_size = lessons)")  # noqa: RUF009
    output_dir: str = option("runs/complementary", "run directory; the roles checkpoint in <output_dir>/<role>")
    samples_to_log: int = option(4, "lessons written to samples.jsonl per round")

    def __post_init__(self) -> None:
        check_counts(self, ("bank_capacity",))
        if self.retrieve < 0:
            raise ConfigError(f"retrieve: must be >= 0, got {self.retrieve}")
        if not -1.0 <= self.min_gain < 1.0:
            raise ConfigError(f"min_gain: a gain lies in [-1, 1]; need -1 <= min_gain < 1, got {self.min_gain}")
        self.role_config("actor")
        self.role_config("extractor")

    def role_config(self, role: Literal["actor", "extractor"]) -> TrainConfig:
        return role_config(self, role, _ROLE_DEFAULTS[role])


# ---------------------------------------------------------------------------------------------- the loop


class ComplementaryRL(RoleLoop):
    """Complementary RL: an actor ``Trainer`` and an experience-extractor ``Trainer``, one round per :meth:`play_round`."""

    def __init__(self, actor: Trainer, extractor: Trainer, task: ExperienceTask, config: ComplementaryConfig):
        super().__init__({"actor": actor, "extractor": extractor}, config)
        self.actor, self.extractor, self.task = actor, extractor, task
        self.bank = ExperienceBank(config.bank_capacity)

    def play_round(self) -> dict[str, float]:
        start, actor, cfg = time.perf_counter(), self.actor, self.actor.config
        rows = actor.data.batch(actor.state.position, cfg.prompts_per_step)
        actor.state.position += cfg.prompts_per_step
        keys = [set(actor.tokenizer.encode(self.task.key(r), add_special_tokens=False)) for r in rows]
        contexts = [self.bank.retrieve(k, self.config.retrieve) for k in keys]
        base_rows = [self.task.with_lessons(r, c) for r, c in zip(rows, contexts, strict=True)]
        rollout = actor.rollout([r[actor.data.prompt_column] for r in base_rows], cfg.group_size, cfg.temperature)
        batch, actor_metrics = actor.score(base_rows, rollout)
        without = group_rates(batch, self.task.success_reward, cfg.group_size)
        extractor_prompts, lessons, lesson_rollout, with_rates = self._extract(base_rows, rollout, without, contexts)
        parsed = [x is not None for x in lessons]
        g_e = lesson_rollout.group_size
        success_without = [without[i // g_e] for i in range(len(lessons))]
        extractor_batch, extractor_metrics = score_each(
            self.extractor,
            extractor_prompts,
            lesson_rollout,
            lesson_parsed=parsed,
            success_with=with_rates,
            success_without=success_without,
        )
        learned = prefixed("actor", actor.learn(batch, rollout))
        learned |= prefixed("extractor", self.extractor.learn(extractor_batch, lesson_rollout))
        gains = [w - wo for ok, w, wo in zip(parsed, with_rates, success_without, strict=True) if ok]
        self._store(lessons, with_rates, success_without, keys, g_e)
        self.samples = [
            {"lesson": lessons[i], "completion": lesson_rollout.texts[i], "gain": with_rates[i] - success_without[i]}
            for i in range(min(self.config.samples_to_log, len(lessons)))
        ]
        return {
            **prefixed("actor", actor_metrics),
            **prefixed("extractor", extractor_metrics),
            **learned,
            "experience/success_without": sum(without) / len(without),
            "experience/parsed_fraction": sum(parsed) / len(parsed),
            "experience/gain": sum(gains) / len(gains) if gains else float("nan"),
            "experience/bank_size": float(len(self.bank)),
            "experience/retrieved": sum(map(len, contexts)) / len(contexts),
            "time/round_s": time.perf_counter() - start,
        }

    def _extractor_prompt(self, row: dict, rollout, index: int, success: float) -> Any:
        """The first trajectory of a question's group, with its outcome, asking for a lesson."""
        first = index * rollout.group_size
        return self.task.extractor_prompt(row, rollout.texts[first], success)

    def _extract(self, rows: list[dict], rollout, without: list[float], contexts: list[list[str]]):
        """The extractor's prompts, its ``G_e`` lessons per question and their rollout, and the actor's
        success rate with each parsed lesson added (the rate without it for a lesson that does not
        parse, so its gain is 0)."""
        extractor, cfg = self.extractor, self.extractor.config
        prompts = [self._extractor_prompt(r, rollout, i, without[i]) for i, r in enumerate(rows)]
        lesson_rollout = extractor.rollout(prompts, cfg.group_size, cfg.temperature)
        lessons = [self.task.parse(text) for text in lesson_rollout.texts]
        g_e = cfg.group_size
        evaluated = [i for i, x in enumerate(lessons) if x is not None]
        with_rates = [without[i // g_e] for i in range(len(lessons))]
        if evaluated:
            actor, actor_cfg = self.actor, self.actor.config
            eval_rows = [self.task.with_lessons(rows[i // g_e], [*contexts[i // g_e], lessons[i]]) for i in evaluated]
            eval_prompts = [r[actor.data.prompt_column] for r in eval_rows]
            probe = actor.rollout(eval_prompts, actor_cfg.group_size, actor_cfg.temperature)
            rates = group_rates(actor.score(eval_rows, probe)[0], self.task.success_reward, actor_cfg.group_size)
            for i, rate in zip(evaluated, rates, strict=True):
                with_rates[i] = rate
        return prompts, lessons, lesson_rollout, with_rates

    def _store(self, lessons: list, with_rates: list[float], without: list[float], keys: list[set], g_e: int) -> None:
        """The best parsed lesson of each question, when its gain is above ``min_gain``."""
        for q, key in enumerate(keys):
            span = [i for i in range(q * g_e, (q + 1) * g_e) if lessons[i] is not None]
            if not span:
                continue
            best = max(span, key=lambda i: with_rates[i] - without[i])
            gain = with_rates[best] - without[best]
            if gain > self.config.min_gain:
                self.bank.add(Experience(lessons[best], sorted(key), gain, self.round))

    def state_dict(self) -> dict[str, Any]:
        return {"bank": [dataclasses.asdict(item) for item in self.bank.items]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bank = ExperienceBank(self.config.bank_capacity)
        for item in state.get("bank", []):
            self.bank.add(Experience(**item))


def build_complementary(config: ComplementaryConfig, task: ExperienceTask | None = None) -> ComplementaryRL:
    """Actor and extractor from ``config.model`` (identical initial weights)."""
    from polyreward.lm.data import PromptSource

    if task is None:
        if config.task != "arithmetic":
            raise ConfigError(f"task: {config.task!r} is not built in; choose 'arithmetic'")
        task = arithmetic_experience(config.task_size, config.seed)
    actor_data = PromptSource(task.actor_rows, seed=config.seed, name=task.name)
    example = task.extractor_prompt(task.actor_rows[0], "", 0.0)
    extractor_data = PromptSource([{"prompt": example}], name=f"{task.name} extractor")
    actor = load_role(config, config.role_config("actor"), actor_data, task.actor_rewards)
    extractor = load_role(config, config.role_config("extractor"), extractor_data, extractor_rewards())
    return ComplementaryRL(actor, extractor, task, config)


def train_from_cli(config_path: str | None, settings: list[str], resume: bool, progress: bool, help_config: bool) -> int:
    """``polyreward train CONFIG`` with ``trainer: complementary``."""
    return run_from_cli(ComplementaryConfig, build_complementary, config_path, settings, resume, progress, help_config)
