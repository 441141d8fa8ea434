"""RewardBatch: K named rewards for N samples, kept apart until an advantage estimator combines them.

Shapes used throughout: ``N`` samples (rollouts, or ``T * E`` environment steps), ``K`` reward
components, ``T`` turns per sample (multi-turn rollouts) and ``L`` response tokens.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from polyreward.groups import dense_index

ArrayLike = Any  # a tensor, a numpy array or (nested) Python lists


def _float_tensor(value: ArrayLike, field: str) -> Tensor:
    """Turn ``value`` into a floating tensor; ``None`` inside lists becomes NaN ("not applicable")."""
    if isinstance(value, Tensor):
        tensor = value
    else:
        try:
            tensor = torch.as_tensor(_none_to_nan(value))
        except (TypeError, ValueError, RuntimeError) as err:  # torch raises all three for bad input
            raise TypeError(f"RewardBatch.{field}: expected numbers (or None), could not convert: {err}") from err
    if tensor.dtype == torch.bool or not (tensor.is_floating_point() or _is_integer(tensor)):
        raise TypeError(f"RewardBatch.{field}: expected a float or integer tensor, got dtype {tensor.dtype}")
    return tensor if tensor.is_floating_point() else tensor.to(torch.get_default_dtype())


def _as_tensor(value: ArrayLike, field: str, expected: str, **kwargs: Any) -> Tensor:
    """``torch.as_tensor`` whose failures name the field (torch raises TypeError, ValueError or RuntimeError)."""
    try:
        return torch.as_tensor(value, **kwargs)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"RewardBatch.{field}: expected {expected}, could not convert: {err}") from err


def _none_to_nan(value: ArrayLike) -> ArrayLike:
    if value is None:
        return math.nan
    if isinstance(value, (list, tuple)):
        return [_none_to_nan(v) for v in value]
    return value


def _is_integer(tensor: Tensor) -> bool:
    return not tensor.is_floating_point() and not tensor.is_complex() and tensor.dtype != torch.bool


def _check_shape(tensor: Tensor, field: str, expected: tuple[int | str, ...], meaning: str) -> None:
    ok = tensor.dim() == len(expected) and all(
        isinstance(e, str) or s == e for s, e in zip(tensor.shape, expected, strict=True)
    )
    if not ok:
        want = ", ".join(str(e) for e in expected)
        raise ValueError(f"RewardBatch.{field}: expected shape [{want}] ({meaning}), got {tuple(tensor.shape)}")


@dataclasses.dataclass(eq=False)
class RewardBatch:
    """K named rewards for N samples, with their group structure.

    Fields (inputs may be tensors, numpy arrays or nested lists; ``None`` in lists means NaN):
        rewards: ``[N, K]`` float. NaN means "this reward does not apply to this sample".
        names: K unique reward names, e.g. ``("correct", "format")``.
        group_ids: ``[N]`` integers, the prompt (or context) each sample answers. Default: one group.
        weights: ``[K]`` finite per-reward weights. Default: all 1.
        response_mask: ``[N, L]`` bool, the response tokens of each sample (token-weighted statistics).
        turn_rewards: ``[N, T]`` float, per-turn rewards of multi-turn rollouts, 0 at padding.
        turn_mask: ``[N, T]`` bool, which turns exist. Default: every non-NaN ``turn_rewards`` entry.
        budgets: ``[N]`` float, the token budget each sample was asked to respect (HBPO).
        terminated / truncated: ``[T, E]`` bool for environment-step batches, where the rows of
            ``rewards`` are the ``T * E`` steps in time-major order (see :meth:`from_steps`).

    Derived: ``group_index[N]`` (dense ``0..num_groups-1``, in order of first appearance of each id)
    and ``num_groups``. Batches are treated as immutable: every method returns a new batch.
    """

    rewards: ArrayLike
    names: Sequence[str]
    group_ids: ArrayLike | None = None
    weights: ArrayLike | None = None
    response_mask: ArrayLike | None = None
    turn_rewards: ArrayLike | None = None
    turn_mask: ArrayLike | None = None
    budgets: ArrayLike | None = None
    terminated: ArrayLike | None = None
    truncated: ArrayLike | None = None
    group_index: Tensor = dataclasses.field(init=False, repr=False)
    num_groups: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        rewards = _float_tensor(self.rewards, "rewards")
        if rewards.dim() == 1:
            raise ValueError(
                "RewardBatch.rewards: expected shape [N, K] (samples x rewards), got a 1-D tensor of "
                f"length {rewards.shape[0]}; for one reward use rewards[:, None]"
            )
        _check_shape(rewards, "rewards", ("N", "K"), "samples x rewards")
        n, k = rewards.shape
        if n == 0 or k == 0:
            raise ValueError(f"RewardBatch.rewards: expected at least one sample and one reward, got shape {(n, k)}")
        self.names = self._check_names(self.names, k)  # before the inf check, whose message names the reward
        if torch.isinf(rewards).any():
            row, col = torch.nonzero(torch.isinf(rewards))[0].tolist()
            raise ValueError(f"RewardBatch.rewards: reward {self.names[col]!r} is infinite at row {row}")
        self.rewards = rewards
        self.weights = self._check_weights(self.weights, k, rewards.dtype, rewards.device)
        self.group_ids = self._check_group_ids(self.group_ids, n, rewards.device)
        uniques, first_seen_index = dense_index(self.group_ids)
        self.group_index, self.num_groups = first_seen_index, int(uniques)
        self._check_optional_fields(n)

    @staticmethod
    def _check_names(names: Sequence[str], k: int) -> tuple[str, ...]:
        if isinstance(names, str):
            raise TypeError(f"RewardBatch.names: expected a sequence of K={k} strings, got the string {names!r}")
        try:
            names = tuple(names)
        except TypeError:
            raise TypeError(f"RewardBatch.names: expected a sequence of K={k} strings, got {names!r}") from None
        if len(names) != k:
            raise ValueError(f"RewardBatch.names: expected K={k} names (one per rewards column), got {len(names)}")
        for i, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise TypeError(f"RewardBatch.names[{i}]: expected a non-empty string, got {name!r}")
            if name in names[:i]:
                raise ValueError(f"RewardBatch.names: duplicate name {name!r} at positions {names.index(name)} and {i}")
        return names

    @staticmethod
    def _check_weights(weights: ArrayLike | None, k: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        if weights is None:
            return torch.ones(k, dtype=dtype, device=device)
        w = _float_tensor(weights, "weights").to(dtype=dtype, device=device)
        _check_shape(w, "weights", (k,), "one weight per reward")
        if not torch.isfinite(w).all():
            raise ValueError(f"RewardBatch.weights: expected finite numbers, got {w.tolist()}")
        return w

    @staticmethod
    def _check_group_ids(group_ids: ArrayLike | None, n: int, device: torch.device) -> Tensor:
        if group_ids is None:
            return torch.zeros(n, dtype=torch.long, device=device)
        ids = group_ids if isinstance(group_ids, Tensor) else _as_tensor(group_ids, "group_ids", "integers")
        if not _is_integer(ids):
            raise TypeError(f"RewardBatch.group_ids: expected integers (prompt index per sample), got {ids.dtype}")
        _check_shape(ids, "group_ids", (n,), "one group id per sample")
        return ids.to(dtype=torch.long, device=device)

    def _check_optional_fields(self, n: int) -> None:
        dtype, device = self.rewards.dtype, self.rewards.device
        if self.response_mask is not None:
            self.response_mask = _as_tensor(self.response_mask, "response_mask", "a bool mask", device=device).bool()
            _check_shape(self.response_mask, "response_mask", (n, "L"), "samples x response tokens")
        if self.turn_rewards is not None:
            turns = _float_tensor(self.turn_rewards, "turn_rewards").to(dtype=dtype, device=device)
            _check_shape(turns, "turn_rewards", (n, "T"), "samples x turns")
            given = self.turn_mask
            mask = ~torch.isnan(turns) if given is None else _as_tensor(given, "turn_mask", "a bool mask").bool()
            _check_shape(mask, "turn_mask", tuple(turns.shape), "samples x turns, like turn_rewards")
            if torch.isnan(turns[mask]).any():
                raise ValueError("RewardBatch.turn_rewards: NaN inside a turn that turn_mask marks as present")
            self.turn_rewards, self.turn_mask = torch.where(mask, turns, 0.0), mask.to(device)
        elif self.turn_mask is not None:
            raise ValueError("RewardBatch.turn_mask: given without turn_rewards")
        if self.budgets is not None:
            self.budgets = _float_tensor(self.budgets, "budgets").to(dtype=dtype, device=device)
            _check_shape(self.budgets, "budgets", (n,), "one token budget per sample")
        if (self.terminated is None) != (self.truncated is None):
            raise ValueError("RewardBatch.terminated / truncated: give both (step batches) or neither")
        if self.terminated is not None:
            self.terminated = _as_tensor(self.terminated, "terminated", "bools", device=device).bool()
            self.truncated = _as_tensor(self.truncated, "truncated", "bools", device=device).bool()
            _check_shape(self.terminated, "terminated", ("T", "E"), "time steps x environments")
            _check_shape(self.truncated, "truncated", tuple(self.terminated.shape), "like terminated")
            if self.terminated.numel() != n:
                raise ValueError(
                    f"RewardBatch.terminated: {tuple(self.terminated.shape)} steps do not match the N={n} "
                    "rows of rewards (expected T * E rows, time-major)"
                )

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_reward_lists(
        cls,
        reward_lists: Sequence[Sequence[float | None]],
        names: Sequence[str],
        *,
        group_ids: ArrayLike | None = None,
        group_size: int | None = None,
        weights: ArrayLike | None = None,
    ) -> RewardBatch:
        """Build a batch from K TRL-style reward outputs (one ``list[float | None]`` of length N each).

        ``group_size=G`` assigns consecutive blocks of G samples to one prompt (TRL's layout).
        """
        reward_lists = list(reward_lists)
        if len(reward_lists) != len(names):
            raise ValueError(f"from_reward_lists: {len(reward_lists)} reward lists but {len(names)} names")
        lengths = {name: len(values) for name, values in zip(names, reward_lists, strict=True)}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"from_reward_lists: reward lists differ in length: {lengths}")
        columns = [_float_tensor(values, f"rewards[{name!r}]") for name, values in zip(names, reward_lists, strict=True)]
        rewards = torch.stack(columns, dim=1) if columns else torch.zeros(0, 0)
        if group_size is not None:
            if group_ids is not None:
                raise ValueError("from_reward_lists: give group_ids or group_size, not both")
            if group_size < 1 or rewards.shape[0] % group_size:
                raise ValueError(f"from_reward_lists: N={rewards.shape[0]} is not a multiple of group_size={group_size}")
            group_ids = torch.arange(rewards.shape[0]) // group_size
        return cls(rewards=rewards, names=names, group_ids=group_ids, weights=weights)

    @classmethod
    def from_steps(
        cls,
        rewards: ArrayLike,
        names: Sequence[str],
        terminated: ArrayLike,
        truncated: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> RewardBatch:
        """Build a step batch from environment rollouts: ``rewards[T, E, K]``, ``terminated[T, E]``."""
        r = _float_tensor(rewards, "rewards")
        _check_shape(r, "rewards", ("T", "E", "K"), "time steps x environments x rewards")
        return cls(
            rewards=r.reshape(-1, r.shape[-1]), names=names, weights=weights, terminated=terminated, truncated=truncated
        )

    @classmethod
    def from_turns(cls, turn_rewards: ArrayLike, group_ids: ArrayLike | None = None, name: str = "turns") -> RewardBatch:
        """A multi-turn batch from per-turn rewards ``[N, T]`` (``None``/NaN = no such turn).

        The reward column ``name`` holds each sample's total over its turns.
        """
        turns = _float_tensor(turn_rewards, "turn_rewards")
        _check_shape(turns, "turn_rewards", ("N", "T"), "samples x turns")
        totals = torch.nan_to_num(turns, nan=0.0).sum(-1, keepdim=True)
        return cls(rewards=totals, names=[name], group_ids=group_ids, turn_rewards=turns)

    # ------------------------------------------------------------------ accessors
    @property
    def num_samples(self) -> int:
        return self.rewards.shape[0]

    @property
    def num_rewards(self) -> int:
        return self.rewards.shape[1]

    @property
    def step_shape(self) -> tuple[int, int] | None:
        """``(T, E)`` for environment-step batches, else None."""
        return None if self.terminated is None else tuple(self.terminated.shape)

    @property
    def token_counts(self) -> Tensor | None:
        """``[N]`` number of response tokens per sample, or None without ``response_mask``."""
        return None if self.response_mask is None else self.response_mask.sum(-1)

    def index(self, name: str) -> int:
        """Column of reward ``name``; an unknown name is an error listing the known ones."""
        if name not in self.names:
            raise KeyError(f"unknown reward {name!r}; this batch has {list(self.names)}")
        return self.names.index(name)

    def __getitem__(self, name: str) -> Tensor:
        """``batch["format"]`` -> that reward's column ``[N]``."""
        return self.rewards[:, self.index(name)]

    def weighted_sum(self) -> Tensor:
        """``[N]`` sum of ``w_k * r_k`` over the rewards that apply (TRL's nansum).

        A sample where no reward applies gets NaN, so that group statistics leave it out.
        """
        total = torch.nan_to_num(self.rewards, nan=0.0) @ self.weights
        return torch.where(torch.isnan(self.rewards).all(-1), torch.full_like(total, float("nan")), total)

    # ------------------------------------------------------------------ one-call edits
    def select(self, *names: str) -> RewardBatch:
        """A batch with only the named rewards, in the order given."""
        columns = [self.index(n) for n in names]
        return dataclasses.replace(self, rewards=self.rewards[:, columns], names=names, weights=self.weights[columns])

    def with_reward(self, name: str, values: ArrayLike, weight: float = 1.0) -> RewardBatch:
        """A batch with one more reward column ``values[N]`` (``None``/NaN = not applicable)."""
        column = _float_tensor(values, f"rewards[{name!r}]").to(self.rewards)
        _check_shape(column, f"rewards[{name!r}]", (self.num_samples,), "one value per sample")
        return dataclasses.replace(
            self,
            rewards=torch.cat([self.rewards, column[:, None]], dim=1),
            names=(*self.names, name),
            weights=torch.cat([self.weights, self.weights.new_tensor([weight])]),
        )

    def with_weights(self, **weights: float) -> RewardBatch:
        """A batch with some weights changed by name: ``batch.with_weights(format=0.5)``."""
        new = self.weights.clone()
        for name, value in weights.items():
            new[self.index(name)] = value
        return dataclasses.replace(self, weights=new)

    def condition(self, name: str, on: str, threshold: float = 1.0) -> RewardBatch:
        """Pay reward ``name`` only where reward ``on`` reaches ``threshold`` (GDPO's conditioning).

        ``r_name' = r_name * 1[r_on >= threshold]``; a NaN gate does not hold. See
        :func:`condition_reward`.
        """
        column = condition_reward(self[name], self[on], threshold)
        rewards = self.rewards.clone()
        rewards[:, self.index(name)] = column
        return dataclasses.replace(self, rewards=rewards)

    def take(self, rows: ArrayLike) -> RewardBatch:
        """The batch restricted to sample indices ``rows`` (every per-sample field follows)."""
        if self.terminated is not None:
            raise ValueError("RewardBatch.take: step batches keep their [T, E] layout; select steps before building")
        index = torch.as_tensor(rows, dtype=torch.long, device=self.rewards.device)
        per_sample = {
            name: getattr(self, name)[index]
            for name in ("rewards", "group_ids", "response_mask", "turn_rewards", "turn_mask", "budgets")
            if getattr(self, name) is not None
        }
        return dataclasses.replace(self, **per_sample)

    def to(self, device: torch.device | str) -> RewardBatch:
        """The same batch with every tensor on ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if f.init and isinstance(getattr(self, f.name), Tensor)
        }
        return dataclasses.replace(self, **moved)

    def __repr__(self) -> str:
        extra = [f for f in ("response_mask", "turn_rewards", "budgets", "terminated") if getattr(self, f) is not None]
        return (
            f"RewardBatch(N={self.num_samples}, names={list(self.names)}, weights={self.weights.tolist()}, "
            f"groups={self.num_groups}" + (f", with {extra}" if extra else "") + ")"
        )


def condition_reward(reward: Tensor, gate: Tensor, threshold: float = 1.0) -> Tensor:
    """``reward * 1[gate >= threshold]``: pay an easy reward only when a harder one holds.

    GDPO reports that conditioning (e.g. length only for correct answers) sets priorities more
    reliably than lowering the easy reward's weight. A NaN gate does not hold; a NaN reward stays NaN.
    Shapes: ``reward[N]``, ``gate[N]`` -> ``[N]``.
    """
    holds = gate >= threshold  # NaN compares False
    return torch.where(holds | torch.isnan(reward), reward, torch.zeros_like(reward))
