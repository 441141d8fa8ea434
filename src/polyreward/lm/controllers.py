"""Training-dynamics controllers: objects the language-model trainer calls at fixed points of a step.

A step with controllers reads::

    plan = controllers.plan(step, position, size, probe)    # rows (prompt samplers), temperature
    rollout = sample(rows of plan, temperature of plan)
    batch = score(rollout)
    controllers.observe(step, batch, indices, rows, texts)  # update statistics, return metrics
    result = controllers.advantages(batch, estimator(batch)) # per-sample re-weighting
    term = controllers.supervised(step)                      # AMFT: demonstrations mixed into the loss,
    weights = controller.mix(step, LossMix(g_RL, g_SFT, ...))  # grad = w_RL·g_RL + w_SFT·g_SFT

Every hook is optional (the base class does nothing). At most one controller chooses the rows.
Configs list them as ``controllers: [{kind, params?}]``; :func:`build_controllers` turns the list
into objects and names the entry, kind or parameter that is wrong. See docs/controllers.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import random
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from polyreward.advantages import AdvantageResult
from polyreward.batch import RewardBatch
from polyreward.rewards.schedules import Alternating
from polyreward.rewards.selection import bstar_balance_table, bstar_choose, repeated_samples

Probe = Callable[[list[dict[str, Any]], int, float], tuple[RewardBatch, list[str]]]
"""``probe(rows, samples_per_row, temperature) -> (batch[len(rows) * samples, K], texts)``: extra
sampling and scoring outside the training batch (B-STaR's probe set, offline selection)."""


@dataclasses.dataclass
class StepPlan:
    """What the step will sample: ``indices`` into the prompt source's rows (None: its own seeded
    order from ``position``), ``rows`` to use instead of those rows (e.g. prompts conditioned on a
    preference; one per index) and the sampling ``temperature`` (None: the config's)."""

    position: int
    size: int
    indices: list[int] | None = None
    rows: list[dict[str, Any]] | None = None
    temperature: float | None = None


@dataclasses.dataclass
class SupervisedTerm:
    """An imitation loss a controller mixes into the step (AMFT): one demonstration per prompt,
    ``prompts[M]`` (as in the prompt column) and ``targets[M]`` (completion text). ``validation``:
    held-out ``(prompts, targets)`` whose NLL gradient :class:`LossMix` carries (None: not this step)."""

    prompts: list[Any]
    targets: list[str]
    validation: tuple[list[Any], list[str]] | None = None


@dataclasses.dataclass
class LossMix:
    """What a loss-mixing controller sees: flattened gradients ``[P]`` over the trainable parameters
    of the step's RL loss, its SFT loss and (when asked) the validation NLL at the current weights;
    the learning rate of the coming update; token-mean entropies (nats) of the policy on its
    rollouts and on the demonstrations; the epoch within the step."""

    rl_grad: Tensor
    sft_grad: Tensor
    val_grad: Tensor | None
    learning_rate: float
    rl_entropy: float
    sft_entropy: float
    epoch: int = 0


class Controller:
    """Base class: every hook is a no-op. Subclasses are dataclasses whose fields are the params."""

    kind: ClassVar[str] = ""
    chooses_rows: ClassVar[bool] = False
    conditions_rows: ClassVar[bool] = False  # rewrites the chosen rows' prompts (runs after the chooser)

    def bind(self, rewards, data, seed: int) -> None:
        """Check reward and column names against the task, once, before the first step."""

    def plan(self, step: int, plan: StepPlan, probe: Probe) -> dict[str, float]:
        return {}

    def observe(
        self, step: int, batch: RewardBatch, indices: list[int], rows: list[dict[str, Any]], texts: list[str]
    ) -> dict[str, float]:
        """After scoring: ``batch[P * G, K]`` of the step's ``rows`` (``indices`` into the prompt
        source, one per row) and the completion ``texts`` (group-major, G per row)."""
        return {}

    def advantages(self, batch: RewardBatch, result: AdvantageResult) -> AdvantageResult:
        return result

    def supervised(self, step: int) -> SupervisedTerm | None:
        """Demonstrations to mix into this step's loss (None: pure RL, the trainer is unchanged)."""
        return None

    def mix(self, step: int, inputs: LossMix) -> tuple[float, float, dict[str, float]]:
        """``(rl_weight, sft_weight, metrics)`` for the step's ``rl_weight·g_RL + sft_weight·g_SFT``;
        called (once per epoch) only on the controller whose :meth:`supervised` gave a term."""
        return 1.0, 0.0, {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


REGISTRY: dict[str, type[Controller]] = {}


def register(kind: str):
    def decorate(cls: type[Controller]) -> type[Controller]:
        cls.kind = kind
        REGISTRY[kind] = cls
        return cls

    return decorate


def build_controllers(specs: list[Mapping[str, Any]]) -> list[Controller]:
    """Controllers from config specs ``[{kind, params?}]``; errors name the entry and what is wrong."""
    from polyreward.lm import amft, dpa, exit_buffer, samplers  # noqa: F401  (registers their kinds)

    out = []
    for index, spec in enumerate(specs):
        where = f"controllers[{index}]"
        if not isinstance(spec, Mapping) or "kind" not in spec:
            raise ValueError(f"{where}: expected a mapping with a 'kind' (one of {sorted(REGISTRY)}), got {spec!r}")
        extra = sorted(set(spec) - {"kind", "params"})
        if extra:
            raise ValueError(f"{where}: unknown keys {extra}; a controller spec has 'kind' and 'params'")
        kind, params = spec["kind"], spec.get("params") or {}
        if kind not in REGISTRY:
            close = difflib.get_close_matches(str(kind), REGISTRY, n=3)
            raise ValueError(f"{where}: unknown kind {kind!r}; did you mean {close}? known: {sorted(REGISTRY)}")
        cls = REGISTRY[kind]
        allowed = sorted(f.name for f in dataclasses.fields(cls) if f.init)
        if not isinstance(params, Mapping) or sorted(set(params) - set(allowed)):
            bad = sorted(set(params) - set(allowed)) if isinstance(params, Mapping) else params
            raise ValueError(f"{where} ({kind}): unknown params {bad}; allowed: {allowed}")
        try:
            out.append(cls(**params))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where} ({kind}): {err}") from err
    choosers = [c.kind for c in out if c.chooses_rows]
    if len(choosers) > 1:
        raise ValueError(f"controllers: {choosers} all choose the prompts of a step; keep one of them")
    conditioners = [i for i, c in enumerate(out) if c.conditions_rows]
    if conditioners and any(c.chooses_rows for c in out[conditioners[0] :]):
        raise ValueError(
            f"controllers: {out[conditioners[0]].kind!r} conditions the step's prompts, so list it after "
            f"{[c.kind for c in out if c.chooses_rows]}, which chooses them"
        )
    return out


class Controllers:
    """The configured controllers, called in config order."""

    def __init__(self, controllers: list[Controller]):
        self.items = list(controllers)

    def bind(self, rewards, data, seed: int) -> None:
        for c in self.items:
            c.bind(rewards, data, seed)

    def plan(self, step: int, position: int, size: int, probe: Probe) -> tuple[StepPlan, dict[str, float]]:
        plan, metrics = StepPlan(position, size), {}
        for c in self.items:
            metrics.update(c.plan(step, plan, probe))
        return plan, metrics

    def observe(
        self, step: int, batch: RewardBatch, indices: list[int], rows: list[dict[str, Any]], texts: list[str]
    ) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for c in self.items:
            metrics.update(c.observe(step, batch, indices, rows, texts))
        return metrics

    def advantages(self, batch: RewardBatch, result: AdvantageResult) -> AdvantageResult:
        for c in self.items:
            result = c.advantages(batch, result)
        return result

    def supervised(self, step: int) -> tuple[Controller, SupervisedTerm] | None:
        """The one controller mixing an imitation loss into this step, with its term (None: none does)."""
        terms = [(c, t) for c in self.items if (t := c.supervised(step)) is not None]
        if len(terms) > 1:
            raise ValueError(f"controllers: {[c.kind for c, _ in terms]} all mix a supervised loss; keep one of them")
        return terms[0] if terms else None

    def state_dict(self) -> list[dict[str, Any]]:
        return [{"kind": c.kind, **c.state_dict()} for c in self.items]

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        if [s.get("kind") for s in states] != [c.kind for c in self.items]:
            raise ValueError(
                f"controllers: checkpoint holds {[s.get('kind') for s in states]}, config has {[c.kind for c in self.items]}"
            )
        for c, s in zip(self.items, states, strict=True):
            c.load_state_dict({k: v for k, v in s.items() if k != "kind"})


def check_reward(rewards, name: str, kind: str, field: str) -> None:
    if name not in rewards.names:
        raise ValueError(f"{kind}.{field}: no reward named {name!r}; the task's rewards are {rewards.names}")


def group_values(batch: RewardBatch, reward: str) -> Tensor:
    """``batch[reward]`` as ``[P, G]`` (groups in order, all of one size, as the trainer samples them)."""
    values = batch[reward]
    return values.reshape(batch.num_groups, -1)


# ---------------------------------------------------------------------------------------------- B-STaR
def default_thresholds() -> list[float]:
    """-1.0 .. 1.0 by 0.01, the released search (``main`` of ``metric_modiacc_auto.py``)."""
    return [round(-1.0 + 0.01 * i, 2) for i in range(201)]


@register("bstar")
@dataclasses.dataclass
class BStar(Controller):
    """B-STaR (arXiv 2412.17256): every ``every`` steps, sample ``probe_samples`` completions of
    ``probe_prompts`` rows at each temperature, grid-search (temperature, threshold) for the highest
    balance score, then sample at that temperature until the next search.

    ``correct``: the reward that says a sample is correct (``>= correct_at``); ``score``: the reward
    that is thresholded (None: the weighted sum of all rewards). The chosen threshold is reported
    (``bstar/threshold``) but does not filter GRPO samples: group normalization needs every sample.
    """

    correct: str
    correct_at: float = 1.0
    score: str | None = None
    temperatures: list[float] = dataclasses.field(default_factory=lambda: [0.4, 0.6, 0.8, 1.0, 1.2])
    thresholds: list[float] = dataclasses.field(default_factory=default_thresholds)
    every: int = 10
    probe_prompts: int = 4
    probe_samples: int = 8
    n_star: int = 8
    chosen: dict[str, float] = dataclasses.field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if not self.temperatures or any(t < 0 for t in self.temperatures):
            raise ValueError(f"temperatures: need at least one value >= 0, got {self.temperatures}")
        if not self.thresholds:
            raise ValueError("thresholds: need at least one value")
        for name in ("every", "probe_prompts", "probe_samples", "n_star"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")

    def bind(self, rewards, data, seed: int) -> None:
        check_reward(rewards, self.correct, self.kind, "correct")
        if self.score is not None:
            check_reward(rewards, self.score, self.kind, "score")
        self._rows, self._seed = data.rows, seed

    def plan(self, step: int, plan: StepPlan, probe: Probe) -> dict[str, float]:
        if step % self.every == 0 or not self.chosen:
            self._search(step, probe)
        plan.temperature = self.chosen["temperature"]
        return {f"bstar/{k}": v for k, v in self.chosen.items()}

    def _search(self, step: int, probe: Probe) -> None:
        rng = random.Random(self._seed * 1_000_003 + step)
        rows = [self._rows[i] for i in rng.sample(range(len(self._rows)), min(self.probe_prompts, len(self._rows)))]
        scores, correct, duplicate = [], [], []
        for t in self.temperatures:
            batch, texts = probe(rows, self.probe_samples, t)
            s = batch.weighted_sum() if self.score is None else torch.nan_to_num(batch[self.score], nan=-math.inf)
            scores.append(s.reshape(len(rows), -1))
            correct.append((torch.nan_to_num(batch[self.correct], nan=-math.inf) >= self.correct_at).reshape(len(rows), -1))
            duplicate.append(repeated_samples(texts, self.probe_samples))
        table = bstar_balance_table(
            torch.stack(scores).double(), torch.stack(correct), self.thresholds, self.n_star, torch.stack(duplicate)
        )
        t, tau, balance = bstar_choose(table, self.temperatures, self.thresholds)
        self.chosen = {"temperature": t, "threshold": tau, "balance": balance}

    def state_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.chosen = dict(state.get("chosen", {}))


# ---------------------------------------------------------------------------------------------- Parallel-R1
@register("alternating_rewards")
@dataclasses.dataclass
class AlternatingRewards(Controller):
    """Parallel-R1's alternating reward schedule: in each ``window`` steps the first ``first`` use
    the weights ``a``, the rest ``b`` (rewards named in neither keep their weights). Installs an
    :class:`~polyreward.rewards.schedules.Alternating` weight on each named reward."""

    window: int
    first: int
    a: dict[str, float]
    b: dict[str, float]

    def __post_init__(self) -> None:
        Alternating(self.window, self.first)  # validates window and first

    def bind(self, rewards, data, seed: int) -> None:
        for field in ("a", "b"):
            for name in getattr(self, field):
                check_reward(rewards, name, self.kind, field)
        for i, component in enumerate(rewards.components):
            if component.name in self.a or component.name in self.b:
                weight = Alternating(
                    self.window, self.first, self.a.get(component.name, 0.0), self.b.get(component.name, 0.0)
                )
                rewards.components[i] = dataclasses.replace(component, weight=weight)

    def plan(self, step: int, plan: StepPlan, probe: Probe) -> dict[str, float]:
        return {"schedule/phase_b": float(step % self.window >= self.first)}


# ---------------------------------------------------------------------------------------------- duration
def duration_weights(
    durations: Tensor, mode: Literal["proportional", "inverse"] = "proportional", max_weight: float = 10.0
) -> Tensor:
    """Per-sample update weights ``w[N]`` from execution times ``durations[N]`` (seconds), mean 1.

    ``proportional``: ``w_i = d_i / mean(d)`` (RL for ML-engineering agents, arXiv 2509.01684:
    duration-aware updates amplify slow, costly actions that an asynchronous learner would otherwise
    see less often); ``inverse``: ``w_i = (1 / d_i) / mean(1 / d)``, the update per second of
    execution. NaN or non-positive durations get weight 1; weights are clipped to ``max_weight``.
    """
    d = durations.double()
    ok = torch.isfinite(d) & (d > 0)
    if not ok.any():
        return torch.ones_like(d)
    raw = torch.where(ok, d if mode == "proportional" else 1.0 / d.clamp(min=1e-12), torch.zeros_like(d))
    w = torch.where(ok, raw / raw[ok].mean(), torch.ones_like(d))
    return w.clamp(max=max_weight)


@register("duration_weighting")
@dataclasses.dataclass
class DurationWeighting(Controller):
    """Scale each sample's advantage by :func:`duration_weights` of the reward ``duration`` (a
    component that reports execution seconds; give it weight 0 so it does not enter the advantage)."""

    duration: str
    mode: Literal["proportional", "inverse"] = "proportional"
    max_weight: float = 10.0

    def __post_init__(self) -> None:
        if self.mode not in ("proportional", "inverse"):
            raise ValueError(f"mode: 'proportional' or 'inverse', got {self.mode!r}")
        if not self.max_weight > 0:
            raise ValueError(f"max_weight: must be > 0, got {self.max_weight}")

    def bind(self, rewards, data, seed: int) -> None:
        check_reward(rewards, self.duration, self.kind, "duration")

    def advantages(self, batch: RewardBatch, result: AdvantageResult) -> AdvantageResult:
        w = duration_weights(batch[self.duration], self.mode, self.max_weight).to(result.advantages.dtype)

        def scale(x: Tensor) -> Tensor:
            return x * w.to(x.device).reshape(-1, *([1] * (x.dim() - 1)))

        metrics = {**result.metrics, "duration/weight_max": float(w.max()), "duration/weight_min": float(w.min())}
        return dataclasses.replace(
            result,
            advantages=scale(result.advantages),
            per_component=None if result.per_component is None else scale(result.per_component),
            channels={k: scale(v) for k, v in result.channels.items()},
            metrics=metrics,
        )
