"""A synthetic family of multi-reward sequence tasks, small enough to train from scratch in seconds.

Every task asks for a sequence of digit tokens whose sum equals a target read from the prompt
("output digits that add up to a + b + c"). The variants add what one claim needs: a length budget,
a tool token that reveals a hidden argument, per-prompt difficulty and budget tokens, or several
turns separated by a token with the next observation injected by the environment.

Shapes: ``N`` samples, ``P`` prompt tokens, ``L`` completion tokens (policy and environment tokens).
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from polyreward.testbed import rewards as R
from polyreward.testbed.vocab import BOS, BUDGET_BASE, DIGITS, END, FILL, HIDDEN, PAD, SEP, TOOL, VOCAB_SIZE


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One prompt of a task.

    tokens: the ``P`` prompt tokens the policy reads.
    target: the digit sum the (first turn of the) answer must reach.
    difficulty: ``"easy"`` / ``"hard"`` (``BudgetTask``), ``"hidden"`` / ``"visible"`` (``ToolTask``)
        or ``"-"``.
    budget: the token budget the prompt asks for (``BudgetTask``), else None.
    reveal: the token a TOOL call injects (the hidden argument, or PAD when nothing is hidden).
    turn_targets / observations: ``MultiTurnTask``: each turn's target, and the token the
        environment injects after each SEP.
    """

    tokens: tuple[int, ...]
    target: int
    difficulty: str = "-"
    budget: int | None = None
    reveal: int = PAD
    turn_targets: tuple[int, ...] = ()
    observations: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class Completion:
    """A sampled completion: its tokens and which of them the environment injected."""

    tokens: tuple[int, ...]
    from_env: tuple[bool, ...]
    ended: bool  # stopped by END (or the last SEP) rather than by the length limit

    @functools.cached_property
    def policy_tokens(self) -> tuple[int, ...]:
        return tuple(t for t, env in zip(self.tokens, self.from_env, strict=True) if not env)

    @property
    def num_tokens(self) -> int:
        """Tokens the policy generated (the length that budgets count)."""
        return len(self.policy_tokens)

    @functools.cached_property
    def digits(self) -> tuple[int, ...]:
        return tuple(t for t in self.policy_tokens if t < 10)

    @property
    def tool_calls(self) -> int:
        return sum(t == TOOL for t in self.policy_tokens)

    def turns(self) -> list[tuple[int, ...]]:
        """Policy tokens of each finished turn (a turn ends with SEP); an unfinished last turn is dropped."""
        turns, current = [], []
        for token in self.policy_tokens:
            current.append(token)
            if token == SEP:
                turns.append(tuple(current))
                current = []
        return turns


class EnvState:
    """Per-row environment state during sampling: which token to inject next and when a row is done."""

    def __init__(self, prompts: Sequence[Prompt]):
        self.prompts = prompts

    def step(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """React to the tokens ``[N]`` just emitted: ``(inject[N] (-1: none), done[N] bool)``."""
        return torch.full_like(tokens, -1), tokens == END


class Task:
    """The protocol every task follows; subclasses set the class attributes and ``sample_prompts``."""

    name: ClassVar[str]
    prompt_length: int
    max_new_tokens: int
    actions: tuple[int, ...]  # tokens the policy may emit

    def sample_prompts(self, n: int, generator: torch.Generator) -> list[Prompt]:
        raise NotImplementedError

    def expand(self, prompts: Sequence[Prompt], group_size: int) -> list[Prompt]:
        """The ``N = len(prompts) * group_size`` per-sample prompts, group by group."""
        return [p for p in prompts for _ in range(group_size)]

    def reward_functions(self) -> list:
        """TRL-style ``fn(prompts, completions) -> list[float]``, one per named reward."""
        raise NotImplementedError

    def demonstration(self, prompt: Prompt, rng: random.Random) -> list[tuple[int, bool]]:
        """An imperfect demonstration ``[(token, from_env), ...]`` for brief supervised pre-training
        (a "base model" with the task's typical flaws); the default copies the prompt's digits."""
        return [*((t, False) for t in prompt.tokens if t < 10), (END, False)]

    def env(self, prompts: Sequence[Prompt]) -> EnvState:
        return EnvState(prompts)

    def turn_rewards(self, prompts: Sequence[Prompt], completions: Sequence[Completion]) -> list[list[float]] | None:
        return None

    def metrics(self, prompts: Sequence[Prompt], completions: Sequence[Completion], rewards: dict[str, Tensor]) -> dict:
        """Scalar metrics of a batch: each reward's mean plus the task's success measures."""
        out = {f"reward/{k}": float(v.mean()) for k, v in rewards.items()}
        out["length"] = sum(c.num_tokens for c in completions) / len(completions)
        return out


def _digits(generator: torch.Generator, n: int, k: int) -> list[list[int]]:
    return torch.randint(0, 10, (n, k), generator=generator).tolist()


@dataclasses.dataclass
class SumTask(Task):
    """``<s> a b c`` -> digits summing to ``a + b + c``, then END, within ``budget`` tokens.

    Rewards: ``correct`` (hard, per-prompt), ``format`` (easy, prompt-independent: END-terminated,
    only digits), ``length`` (1 within ``budget`` tokens, linear to 0 at ``budget + slack``).
    Copying the arguments takes ``n_args + 1`` tokens, so a budget below that forces real sums.
    """

    name: ClassVar[str] = "sum"
    n_args: int = 3
    budget: int = 3
    slack: int = 4
    max_new_tokens: int = 10
    demo_noise: float = 0.0
    demo_drop: float = 0.0

    def __post_init__(self) -> None:
        self.prompt_length = 1 + self.n_args
        self.actions = (*DIGITS, END, FILL)

    def sample_prompts(self, n: int, generator: torch.Generator) -> list[Prompt]:
        return [
            Prompt(tokens=(BOS, *args), target=sum(args), budget=self.budget) for args in _digits(generator, n, self.n_args)
        ]

    def reward_functions(self) -> list:
        return [R.correct, R.format_ok, R.length_budget(self.slack)]

    def demonstration(self, prompt: Prompt, rng: random.Random) -> list[tuple[int, bool]]:
        """The prompt's digits copied; with probability ``demo_drop`` the last one is left out (a
        systematic error), and each copied digit is replaced by a random one with probability ``demo_noise``."""
        demo = super().demonstration(prompt, rng)
        if self.demo_drop > 0 and rng.random() < self.demo_drop:  # no draws at 0: the default stays as it was
            demo = [*demo[:-2], demo[-1]]
        if self.demo_noise > 0:
            demo = [(rng.randrange(10), e) if t < 10 and rng.random() < self.demo_noise else (t, e) for t, e in demo]
        return demo

    def metrics(self, prompts, completions, rewards):
        out = super().metrics(prompts, completions, rewards)
        joint = (rewards["correct"] == 1) & (rewards["format"] == 1) & (rewards["length"] == 1)
        out["joint"] = float(joint.float().mean())
        return out


class _ToolEnv(EnvState):
    def __init__(self, prompts: Sequence[Prompt]):
        super().__init__(prompts)
        self.reveal = torch.tensor([p.reveal for p in prompts])

    def step(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        inject = torch.where(tokens == TOOL, self.reveal, torch.full_like(tokens, -1))
        return inject, tokens == END


@dataclasses.dataclass
class ToolTask(Task):
    """``<s> a b`` with one argument shown as ``#`` on a ``hidden_prob`` share of prompts.

    Emitting TOOL makes the environment inject the hidden digit (PAD when nothing is hidden), so a
    tool call makes ``correct`` easy on hidden prompts and is useless on visible ones.
    Rewards: ``correct``, ``format`` (END-terminated, digits and tool calls only), ``tool_calls``
    (the count T, for scalarized penalties) and ``tool_efficiency`` (HDPO's ``1 / (T + 1)`` when
    correct, else 0).
    """

    name: ClassVar[str] = "tool"
    n_args: int = 2
    hidden_prob: float = 0.5
    max_new_tokens: int = 10
    demo_tool_prob: float = 0.5
    demo_noise: float = 0.0

    def __post_init__(self) -> None:
        self.prompt_length = 1 + self.n_args
        self.actions = (*DIGITS, END, TOOL)

    def sample_prompts(self, n: int, generator: torch.Generator) -> list[Prompt]:
        hide = (torch.rand(n, generator=generator) < self.hidden_prob).tolist()
        where = torch.randint(0, self.n_args, (n,), generator=generator).tolist()
        prompts = []
        for args, h, w in zip(_digits(generator, n, self.n_args), hide, where, strict=True):
            shown = [HIDDEN if h and i == w else a for i, a in enumerate(args)]
            prompts.append(
                Prompt(
                    tokens=(BOS, *shown),
                    target=sum(args),
                    difficulty="hidden" if h else "visible",
                    reveal=args[w] if h else PAD,
                )
            )
        return prompts

    def reward_functions(self) -> list:
        return [R.correct, R.format_ok, R.tool_calls, R.tool_efficiency]

    def demonstration(self, prompt: Prompt, rng: random.Random) -> list[tuple[int, bool]]:
        """Calls the tool on a ``demo_tool_prob`` share of prompts, hidden or not (tool overuse),
        then copies the digits; without the tool a hidden digit is guessed. With ``demo_noise`` > 0
        each copied digit is replaced by a random one with that probability (a sloppy base model)."""
        out, known = [], prompt.reveal
        if rng.random() < self.demo_tool_prob:
            out += [(TOOL, False), (prompt.reveal, True)]
        else:
            known = rng.randrange(10)
        digits = [known if t == HIDDEN else t for t in prompt.tokens[1:]]
        if self.demo_noise > 0:  # no draws otherwise: demonstrations without noise stay as they were
            digits = [rng.randrange(10) if rng.random() < self.demo_noise else d for d in digits]
        return out + [(d, False) for d in digits] + [(END, False)]

    def env(self, prompts):
        return _ToolEnv(prompts)

    def metrics(self, prompts, completions, rewards):
        out = super().metrics(prompts, completions, rewards)
        for kind in ("hidden", "visible"):
            rows = torch.tensor([p.difficulty == kind for p in prompts])
            if rows.any():
                out[f"correct/{kind}"] = float(rewards["correct"][rows].mean())
                out[f"tool_calls/{kind}"] = float(rewards["tool_calls"][rows].mean())
        return out


@dataclasses.dataclass
class BudgetTask(Task):
    """Easy (``<s> <pad> <pad> a <b>``) and hard (``<s> a b c <b>``) prompts with a budget token
    (``hard_args`` arguments on hard prompts, 3 by default; easy ones pad all but the last).

    ``expand`` gives the ``G`` samples of a prompt the budgets in turn (HBPO's subgroups: ``G / k``
    samples per budget). Rewards: ``correct``; ``hbpo``, HBPO's ``R(n | b)`` with ``L_max`` =
    ``max_new_tokens``, ``beta = 4`` and ``alpha = 1 / L_max`` (the paper's ``alpha * L_max = 1``);
    ``length``, 1 within the budget, linear to 0 at ``budget + slack`` (for scalarized arms).
    """

    name: ClassVar[str] = "budget"
    budgets: tuple[int, ...] = (2, 4, 6, 8)
    hard_prob: float = 0.5
    slack: int = 4
    max_new_tokens: int = 12
    demo_max_fill: int = 6
    hard_args: int = 3

    def __post_init__(self) -> None:
        if len(self.budgets) > VOCAB_SIZE - BUDGET_BASE:
            raise ValueError(f"BudgetTask: at most {VOCAB_SIZE - BUDGET_BASE} budgets, got {self.budgets}")
        self.prompt_length = 2 + self.hard_args
        self.actions = (*DIGITS, END, FILL)

    def sample_prompts(self, n: int, generator: torch.Generator) -> list[Prompt]:
        hard = (torch.rand(n, generator=generator) < self.hard_prob).tolist()
        prompts = []
        for args, h in zip(_digits(generator, n, self.hard_args), hard, strict=True):
            shown = args if h else [*[PAD] * (self.hard_args - 1), args[-1]]
            target = sum(args) if h else args[-1]
            prompts.append(Prompt(tokens=(BOS, *shown, PAD), target=target, difficulty="hard" if h else "easy"))
        return prompts

    def expand(self, prompts: Sequence[Prompt], group_size: int) -> list[Prompt]:
        out = []
        for p in prompts:
            for i in range(group_size):
                b = i * len(self.budgets) // group_size  # G / k consecutive samples per budget
                out.append(dataclasses.replace(p, tokens=(*p.tokens[:-1], BUDGET_BASE + b), budget=self.budgets[b]))
        return out

    def reward_functions(self) -> list:
        return [R.correct, R.hbpo_budget(self.max_new_tokens), R.length_budget(self.slack)]

    def demonstration(self, prompt: Prompt, rng: random.Random) -> list[tuple[int, bool]]:
        """Verbose: up to ``demo_max_fill`` filler tokens, whatever the budget, then the arguments copied."""
        fill = [(FILL, False)] * rng.randint(0, self.demo_max_fill)
        return fill + [(t, False) for t in prompt.tokens if t < 10] + [(END, False)]

    def metrics(self, prompts, completions, rewards):
        out = super().metrics(prompts, completions, rewards)
        lengths = torch.tensor([float(c.num_tokens) for c in completions])
        for kind in ("easy", "hard"):
            rows = torch.tensor([p.difficulty == kind for p in prompts])
            if rows.any():
                out[f"correct/{kind}"] = float(rewards["correct"][rows].mean())
                out[f"length/{kind}"] = float(lengths[rows].mean())
        return out


class _TurnEnv(EnvState):
    def __init__(self, prompts: Sequence[Prompt]):
        super().__init__(prompts)
        self.observations = torch.tensor([p.observations for p in prompts])  # [N, T - 1]
        self.turns_done = torch.zeros(len(prompts), dtype=torch.long)

    def step(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        sep = tokens == SEP
        self.turns_done = self.turns_done + sep.long()
        last = self.turns_done > self.observations.shape[1]
        index = (self.turns_done - 1).clamp(0, self.observations.shape[1] - 1)
        nxt = self.observations.gather(1, index[:, None]).squeeze(1)
        inject = torch.where(sep & ~last, nxt, torch.full_like(tokens, -1))
        return inject, sep & last


@dataclasses.dataclass
class MultiTurnTask(Task):
    """``<s> o0 o1``; turn t must output digits summing to ``o_t + o_{t+1}``, then SEP.

    After each SEP but the last, the environment injects the next observation ``o_{t+2}``, so
    each turn needs the previous observation too. Turn reward: 1 if the turn's digit sum matches
    (at least one digit), else 0; turns never reached are absent. ``match`` is the trajectory
    score, the sum of the turn rewards.
    """

    name: ClassVar[str] = "turns"
    n_turns: int = 3
    max_new_tokens: int = 14
    demo_noise: float = 0.3

    def __post_init__(self) -> None:
        self.prompt_length = 3
        self.actions = (*DIGITS, SEP)

    def sample_prompts(self, n: int, generator: torch.Generator) -> list[Prompt]:
        prompts = []
        for obs in _digits(generator, n, self.n_turns + 1):
            targets = tuple(obs[t] + obs[t + 1] for t in range(self.n_turns))
            prompts.append(
                Prompt(tokens=(BOS, obs[0], obs[1]), target=targets[0], turn_targets=targets, observations=tuple(obs[2:]))
            )
        return prompts

    def reward_functions(self) -> list:
        return [R.turn_match]

    def demonstration(self, prompt: Prompt, rng: random.Random) -> list[tuple[int, bool]]:
        """Each turn copies its two observations, each digit replaced by a random one with
        probability ``demo_noise``."""
        obs = [*prompt.tokens[1:], *prompt.observations]
        out = []
        for t in range(self.n_turns):
            for d in obs[t : t + 2]:
                out.append((rng.randrange(10) if rng.random() < self.demo_noise else d, False))
            out.append((SEP, False))
            if t + 2 < len(obs):
                out.append((obs[t + 2], True))
        return out

    def env(self, prompts):
        return _TurnEnv(prompts)

    def turn_rewards(self, prompts, completions):
        return [R.turn_scores(p, c) for p, c in zip(prompts, completions, strict=True)]

    def metrics(self, prompts, completions, rewards):
        out = super().metrics(prompts, completions, rewards)
        scores = [R.turn_scores(p, c) for p, c in zip(prompts, completions, strict=True)]
        out["success"] = sum(len(s) == self.n_turns and all(s) for s in scores) / len(scores)
        for t in range(self.n_turns):
            out[f"turn{t + 1}"] = sum(len(s) > t and s[t] == 1 for s in scores) / len(scores)
        return out


TASKS: dict[str, type[Task]] = {t.name: t for t in (SumTask, ToolTask, BudgetTask, MultiTurnTask)}
