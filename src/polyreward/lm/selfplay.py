"""Dual play for language models: PasoDoble (Zhang, Huang, Li & Cardie, "Better LLM Reasoning via
Dual-Play", arXiv 2511.11881, 2025; code github.com/HCY123902/PasoDoble).

Two :class:`~polyreward.lm.trainer.Trainer` instances loaded from the same base model play one
round at a time:

knowledge-base prompts -> Proposer samples ``G_p`` proposals each -> parse ``(question, answer)``
-> validity (well-formed + a Solver-independent check) -> Solver samples ``G_s`` answers per valid
question, scored by correctness against the proposed answer -> per-proposal columns
``question_valid``, ``solver_pass_rate``, ``question_diversity`` -> the Proposer's named reward
components ``validity``, ``difficulty``, ``diversity`` ([N, 3]) -> both ``learn`` (``joint``), or
one role at a time for a phase of rounds while the other is held fixed (``alternating``, the paper's
offline paradigm).

Proposer reward, as in the authors' ``ProposerGRPOTrainer._score_completions``: with pass rate ``p``
(0 for an invalid proposal) and diversity ``d``, the reward is 0 unless ``p > pass_rate_lower`` and
``d > diversity_floor``; otherwise ``1.1 - p + 0.2 d``. Here that is ``difficulty = 1.1 - p`` plus
``diversity = d`` with weight 0.2, both gated, so ``grpo`` on the weighted sum reproduces the paper's
scalar while the batch keeps the components apart. See docs/self-play.md.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Literal

from polyreward.batch import RewardBatch
from polyreward.config import ConfigError, option
from polyreward.lm.config import TrainConfig
from polyreward.lm.roles import (
    RoleLoop,
    RoleLoopConfig,
    check_counts,
    group_rates,
    has_signal,
    load_role,
    prefixed,
    role_config,
    run_from_cli,
    score_each,
)
from polyreward.lm.rollout import Rollout
from polyreward.lm.tasks import SYSTEM, correct
from polyreward.lm.trainer import Trainer
from polyreward.rewards import RewardComponent

# ---------------------------------------------------------------------------------------------- proposals


@dataclasses.dataclass(frozen=True)
class Proposal:
    """One proposed question with the Proposer's own answer (the Solver's ground truth)."""

    question: str
    answer: str


_QUESTION = re.compile(r"<question>(.*?)</question>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def parse_proposal(text: str) -> Proposal | None:
    """``<question>Q</question> ... <answer>A</answer>`` -> ``Proposal(Q, A)``; ``None`` when a tag is
    missing or empty. The first question and the last answer count (the paper takes the last ``\\boxed``)."""
    question, answers = _QUESTION.search(text), _ANSWER.findall(text)
    if question is None or not answers:
        return None
    q, a = question.group(1).strip(), answers[-1].strip()
    return Proposal(q, a) if q and a else None


def proposal_wellformed(proposal: Proposal) -> bool:
    """PasoDoble's reward-hacking check (``proposer_reward_hacking_check``): the answer must not be
    written into the question, the question not into the answer, and no answer tag in the question."""
    q, a = proposal.question, proposal.answer
    return bool(q) and bool(a) and a not in q and q not in a and "<answer>" not in q


_OPERATORS = {ast.Add: lambda x, y: x + y, ast.Sub: lambda x, y: x - y, ast.Mult: lambda x, y: x * y}
_LIMIT = 10**9


def arithmetic_value(expression: str) -> int | None:
    """The integer value of ``+ - *`` arithmetic on integers (parentheses allowed), or ``None`` when
    the text is anything else. A leading "What is" and a trailing "?" or "=" are ignored."""
    text = re.sub(r"^\s*what\s+is\s+", "", expression, flags=re.IGNORECASE).strip().rstrip("?=").strip()
    text = text.replace("×", "*").replace("−", "-")
    if not text or len(text) > 80:
        return None
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return None
    return _evaluate(tree.body)


def _evaluate(node: ast.AST) -> int | None:
    if isinstance(node, ast.Constant):
        ok = isinstance(node.value, int) and not isinstance(node.value, bool) and abs(node.value) < _LIMIT
        return node.value if ok else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand)
        return None if value is None else (-value if isinstance(node.op, ast.USub) else value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if left is None or right is None:
            return None
        value = _OPERATORS[type(node.op)](left, right)
        return value if abs(value) < _LIMIT else None
    return None


def arithmetic_valid(proposal: Proposal) -> bool:
    """The question is integer arithmetic whose value equals the proposed (integer) answer."""
    if not re.fullmatch(r"-?\d+", proposal.answer.strip()):
        return False
    value = arithmetic_value(proposal.question)
    return value is not None and value == int(proposal.answer)


# ---------------------------------------------------------------------------------------------- rewards


def jaccard(a: set, b: set) -> float:
    """``|a & b| / |a | b|``; two empty sets are identical (1.0)."""
    union = len(a | b)
    return 1.0 if union == 0 else len(a & b) / union


def diversity_score(question: set, history: Sequence[set], threshold: float = 0.8) -> float:
    """PasoDoble's diversity (``DiversityRewardManager.diversity_reward``): the fraction of the recent
    questions (token-id sets) whose Jaccard similarity to ``question`` is at most ``threshold``;
    1.0 with no history."""
    if not history:
        return 1.0
    similar = sum(jaccard(question, past) > threshold for past in history)
    return (len(history) - similar) / len(history)


@dataclasses.dataclass(frozen=True)
class ProposerRewards:
    """The numbers of the Proposer reward (defaults: the authors' code and online script)."""

    pass_rate_lower: float = 0.2
    diversity_floor: float = 0.3
    difficulty_offset: float = 1.1
    diversity_weight: float = 0.2
    validity_weight: float = 0.0

    def gate(self, valid: bool, pass_rate: float, diversity: float) -> bool:
        """Rewarded at all: valid, solved more often than ``pass_rate_lower``, diverse enough."""
        return bool(valid) and pass_rate > self.pass_rate_lower and diversity > self.diversity_floor

    def components(self) -> list[RewardComponent]:
        """``validity``, ``difficulty``, ``diversity``: TRL-style functions of the per-proposal columns."""

        def validity(prompts, completions, question_valid, **kwargs) -> list[float]:
            return [1.0 if v else 0.0 for v in question_valid]

        def difficulty(prompts, completions, question_valid, solver_pass_rate, question_diversity, **kwargs):
            rows = zip(question_valid, solver_pass_rate, question_diversity, strict=True)
            return [self.difficulty_offset - p if self.gate(v, p, d) else 0.0 for v, p, d in rows]

        def diversity(prompts, completions, question_valid, solver_pass_rate, question_diversity, **kwargs):
            rows = zip(question_valid, solver_pass_rate, question_diversity, strict=True)
            return [d if self.gate(v, p, d) else 0.0 for v, p, d in rows]

        return [
            RewardComponent(validity, weight=self.validity_weight),
            RewardComponent(difficulty, weight=1.0),
            RewardComponent(diversity, weight=self.diversity_weight),
        ]

    def scalar(self, valid: bool, pass_rate: float, diversity: float) -> float:
        """The paper's single Proposer reward ``1.1 - p + 0.2 d`` (0 when gated out), plus validity."""
        gated = self.gate(valid, pass_rate, diversity)
        base = self.difficulty_offset - pass_rate + self.diversity_weight * diversity if gated else 0.0
        return base + self.validity_weight * float(bool(valid))


# ---------------------------------------------------------------------------------------------- tasks


@dataclasses.dataclass(frozen=True)
class QATask:
    """A knowledge base and the checks dual play needs; every piece is pluggable.

    proposer_rows: rows with a ``prompt`` (a knowledge piece in a request for a question).
    validate: the Solver-independent check of a well-formed proposal.
    solver_row: ``Proposal -> row`` with the Solver's ``prompt`` and the ``answer`` column.
    solver_rewards: the Solver's rewards; the one named ``pass_reward`` gives the pass rate.
    """

    name: str
    proposer_rows: list[dict[str, Any]]
    validate: Callable[[Proposal], bool]
    solver_row: Callable[[Proposal], dict[str, Any]]
    solver_rewards: list
    example: Proposal
    parse: Callable[[str], Proposal | None] = parse_proposal
    pass_reward: str = "correct"


PROPOSER_SYSTEM = "You write arithmetic questions. Reply with <question>EXPRESSION</question><answer>RESULT</answer>."


def arithmetic_qa(size: int, seed: int, max_operand: int = 20) -> QATask:
    """Built-in knowledge base: "use the numbers a and b"; valid = the expression equals the answer."""
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(size):
        a, b = rng.randint(1, max_operand), rng.randint(1, max_operand)
        prompt = [
            {"role": "system", "content": PROPOSER_SYSTEM},
            {"role": "user", "content": "Write a question with the numbers 2 and 5."},
            {"role": "assistant", "content": "<question>2 * 5 + 1</question><answer>11</answer>"},
            {"role": "user", "content": f"Write a question with the numbers {a} and {b}."},
        ]
        rows.append({"prompt": prompt, "knowledge": f"{a} and {b}"})
    return QATask("arithmetic", rows, arithmetic_valid, arithmetic_solver_row, [correct], example=Proposal("3 + 4", "7"))


def arithmetic_solver_row(proposal: Proposal) -> dict[str, Any]:
    """The built-in arithmetic task's one-shot chat, asking the proposed question."""
    question = proposal.question if proposal.question.rstrip().endswith("?") else f"What is {proposal.question}?"
    prompt = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "What is 3 + 4?"},
        {"role": "assistant", "content": "<answer>7</answer>"},
        {"role": "user", "content": question},
    ]
    return {"prompt": prompt, "answer": proposal.answer, "question": proposal.question}


# ---------------------------------------------------------------------------------------------- config

Mode = Literal["joint", "alternating"]
_ROLE_DEFAULTS = {
    "proposer": {"estimator": "grpo", "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 32},
    "solver": {"estimator": "grpo", "group_size": 4, "max_new_tokens": 16},
}


@dataclasses.dataclass
class DualPlayConfig(RoleLoopConfig):
    trainer: Literal["dual_play"] = option("dual_play", "which trainer reads the config: 'dual_play' (this one)")
    task: Literal["arithmetic"] = option("arithmetic", "knowledge base: 'arithmetic' (built-in)")
    task_size: int = option(1000, "knowledge pieces generated")
    max_operand: int = option(20, "arithmetic: largest number in a knowledge piece")
    mode: Mode = option("joint", "'joint': both roles learn every round; 'alternating': one role per phase")  # noqa: RUF009
    proposer_phase_steps: int = option(10, "alternating: rounds in which only the Proposer learns")
    solver_phase_steps: int = option(5, "alternating: rounds in which only the Solver learns")
    pass_rate_lower: float = option(0.2, "Proposer reward is 0 unless the Solver's pass rate is above this")
    pass_rate_upper: float = option(1.0, "a round is informative when a pass rate lies in (lower, upper)")
    skip_uninformative: bool = option(True, "skip the updates of a round with no informative question (paper)")
    difficulty_offset: float = option(1.1, "difficulty reward = offset - pass rate (gated)")
    diversity_weight: float = option(0.2, "weight of the diversity component")
    validity_weight: float = option(0.0, "weight of the validity component (0: only a gate, as in the paper)")
    diversity_floor: float = option(0.3, "Proposer reward is 0 unless the diversity is above this")
    similarity_threshold: float = option(0.8, "Jaccard similarity above which two questions count as similar")
    diversity_window: int = option(100, "recent valid questions the diversity compares against")
    proposer: dict[str, Any] = option({}, "TrainConfig overrides for the Proposer (estimator, group_size ...)")  # noqa: RUF009
    solver: dict[str, Any] = option({}, "TrainConfig overrides for the Solver (group_size = answers per question)")  # noqa: RUF009
    output_dir: str = option("runs/dual_play", "run directory; the roles checkpoint in <output_dir>/<role>")
    samples_to_log: int = option(4, "proposals written to samples.jsonl per round")

    def __post_init__(self) -> None:
        check_counts(self, ("max_operand", "proposer_phase_steps", "solver_phase_steps", "diversity_window"))
        if not 0.0 <= self.pass_rate_lower < self.pass_rate_upper <= 1.0:
            raise ConfigError(
                f"pass_rate_lower, pass_rate_upper: need 0 <= lower < upper <= 1, "
                f"got {self.pass_rate_lower}, {self.pass_rate_upper}"
            )
        if not 0.0 < self.similarity_threshold <= 1.0:
            raise ConfigError(f"similarity_threshold: must be in (0, 1], got {self.similarity_threshold}")
        if not 0.0 <= self.diversity_floor < 1.0:
            raise ConfigError(f"diversity_floor: must be in [0, 1) (diversity is at most 1), got {self.diversity_floor}")
        self.role_config("proposer")
        self.role_config("solver")

    def role_config(self, role: Literal["proposer", "solver"]) -> TrainConfig:
        """The role's TrainConfig: shared fields, the role's defaults, then the ``proposer:``/``solver:`` overrides."""
        return role_config(self, role, _ROLE_DEFAULTS[role])

    def rewards(self) -> ProposerRewards:
        return ProposerRewards(
            self.pass_rate_lower, self.diversity_floor, self.difficulty_offset, self.diversity_weight, self.validity_weight
        )


# ---------------------------------------------------------------------------------------------- dual play


def phase_of(round_index: int, mode: Mode, proposer_steps: int, solver_steps: int) -> Literal["joint", "proposer", "solver"]:
    """Who learns in a round: both (``joint``), or the Proposer for ``proposer_steps`` rounds, then the
    Solver for ``solver_steps`` rounds, and again (``alternating``)."""
    if mode == "joint":
        return "joint"
    return "proposer" if round_index % (proposer_steps + solver_steps) < proposer_steps else "solver"


class DualPlay(RoleLoop):
    """PasoDoble: a Proposer and a Solver ``Trainer`` (same base model), one round per :meth:`play_round`."""

    def __init__(self, proposer: Trainer, solver: Trainer, task: QATask, config: DualPlayConfig):
        super().__init__({"proposer": proposer, "solver": solver}, config)
        self.proposer, self.solver, self.task = proposer, solver, task
        self.reward_params = config.rewards()
        self.history: deque[set[int]] = deque(maxlen=config.diversity_window)

    def play_round(self) -> dict[str, float]:
        cfg = self.config
        start, phase = time.perf_counter(), phase_of(self.round, cfg.mode, cfg.proposer_phase_steps, cfg.solver_phase_steps)
        prompts, knowledge, rollout = self._propose()
        proposals = [self.task.parse(text) for text in rollout.texts]
        valid = [p is not None and proposal_wellformed(p) and bool(self.task.validate(p)) for p in proposals]
        questions = list(dict.fromkeys(p for p, ok in zip(proposals, valid, strict=True) if ok))
        solved = self._solve(questions)
        rates = dict(zip(questions, solved[2], strict=True)) if solved else {}
        pass_rate = [rates[p] if ok else 0.0 for p, ok in zip(proposals, valid, strict=True)]
        diversity = self._diversity(proposals, valid)
        batch, reward_metrics = score_each(
            self.proposer,
            prompts,
            rollout,
            question_valid=valid,
            solver_pass_rate=pass_rate,
            question_diversity=diversity,
        )
        learn_metrics = self._learn(phase, batch, rollout, solved)
        scalar = [self.reward_params.scalar(*row) for row in zip(valid, pass_rate, diversity, strict=True)]
        self.samples = [
            {
                "knowledge": knowledge[i // rollout.group_size],
                "completion": rollout.texts[i],
                "valid": valid[i],
                "pass_rate": pass_rate[i],
                "diversity": diversity[i],
                "reward": scalar[i],
            }
            for i in range(min(self.config.samples_to_log, rollout.num_samples))
        ]
        solver_metrics = prefixed("solver", solved[3]) if solved else {}
        return {
            **prefixed("proposer", reward_metrics),
            **solver_metrics,
            **learn_metrics,
            "selfplay/phase": {"joint": 0.0, "proposer": 1.0, "solver": 2.0}[phase],
            "selfplay/valid_fraction": sum(valid) / len(valid),
            "selfplay/questions": float(len(questions)),
            "selfplay/solver_pass_rate": sum(rates.values()) / len(rates) if rates else float("nan"),
            "selfplay/diversity": sum(d for d, ok in zip(diversity, valid, strict=True) if ok) / max(sum(valid), 1),
            "selfplay/proposer_reward": sum(scalar) / len(scalar),
            "time/round_s": time.perf_counter() - start,
        }

    def _propose(self) -> tuple[list, list, Rollout]:
        proposer, cfg = self.proposer, self.proposer.config
        rows = proposer.data.batch(proposer.state.position, cfg.prompts_per_step)
        proposer.state.position += cfg.prompts_per_step
        prompts = [row[proposer.data.prompt_column] for row in rows]
        rollout = proposer.rollout(prompts, cfg.group_size, cfg.temperature)
        return prompts, [row.get("knowledge") for row in rows], rollout

    def _solve(self, questions: list[Proposal]) -> tuple[RewardBatch, Rollout, list[float], dict] | None:
        """``G_s`` Solver answers per valid question, scored; ``None`` when there is no valid question."""
        if not questions:
            return None
        solver, cfg = self.solver, self.solver.config
        rows = [self.task.solver_row(p) for p in questions]
        rollout = solver.rollout([row[solver.data.prompt_column] for row in rows], cfg.group_size, cfg.temperature)
        batch, metrics = solver.score(rows, rollout)
        return batch, rollout, group_rates(batch, self.task.pass_reward, cfg.group_size), metrics

    def _diversity(self, proposals: list[Proposal | None], valid: list[bool]) -> list[float]:
        """Each valid question against the recent ones; the history takes this round's after scoring (as the paper)."""
        tokenizer, history, threshold = self.proposer.tokenizer, list(self.history), self.config.similarity_threshold
        sets = [
            set(tokenizer.encode(p.question, add_special_tokens=False)) if ok else set()
            for p, ok in zip(proposals, valid, strict=True)
        ]
        scores = [diversity_score(s, history, threshold) if ok else 0.0 for s, ok in zip(sets, valid, strict=True)]
        self.history.extend(s for s, ok in zip(sets, valid, strict=True) if ok)
        return scores

    def _learn(self, phase: str, batch: RewardBatch, rollout: Rollout, solved) -> dict[str, float]:
        """The phase's updates; a round with no pass rate in (lower, upper), or (when the Proposer learns) a
        flat Proposer batch, is skipped with ``skip_uninformative`` (the paper skips it)."""
        cfg = self.config
        rates = solved[2] if solved else []
        informative = any(cfg.pass_rate_lower < r < cfg.pass_rate_upper for r in rates)
        skip = cfg.skip_uninformative and (not informative or (phase != "solver" and not has_signal(batch)))
        out = {"selfplay/skipped": float(skip), "selfplay/proposer_learned": 0.0, "selfplay/solver_learned": 0.0}
        if skip:
            return out
        if phase != "solver":
            out.update(prefixed("proposer", self.proposer.learn(batch, rollout)))
            out["selfplay/proposer_learned"] = 1.0
        if phase != "proposer" and solved is not None:
            out.update(prefixed("solver", self.solver.learn(solved[0], solved[1])))
            out["selfplay/solver_learned"] = 1.0
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"history": [sorted(s) for s in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = deque((set(s) for s in state.get("history", [])), maxlen=self.config.diversity_window)


def build_task(config: DualPlayConfig) -> QATask:
    if config.task == "arithmetic":
        return arithmetic_qa(config.task_size, config.seed, config.max_operand)
    raise ConfigError(f"task: {config.task!r} is not a built-in knowledge base; choose 'arithmetic'")


def build_dual_play(config: DualPlayConfig, task: QATask | None = None) -> DualPlay:
    """Both roles from ``config.model`` (identical initial weights), with the task's rewards."""
    from polyreward.lm.data import PromptSource

    task = task or build_task(config)
    proposer_data = PromptSource(task.proposer_rows, seed=config.seed, name=task.name)
    solver_data = PromptSource([task.solver_row(task.example)], name=f"{task.name} solver")
    proposer = load_role(config, config.role_config("proposer"), proposer_data, config.rewards().components())
    solver = load_role(config, config.role_config("solver"), solver_data, task.solver_rewards)
    return DualPlay(proposer, solver, task, config)


def train_from_cli(config_path: str | None, settings: list[str], resume: bool, progress: bool, help_config: bool) -> int:
    """``polyreward train CONFIG`` with ``trainer: dual_play``."""
    return run_from_cli(DualPlayConfig, build_dual_play, config_path, settings, resume, progress, help_config)
