"""Potential-based reward shaping for the gym trainer: the ``"shaping"`` reward component.

``shaping: pbrs`` pays ``F = gamma * Phi(s') - Phi(s)`` (Ng et al. 1999), with ``Phi(s') = 0`` after a
terminal step under ``shaping_terminal: zero``; this leaves the optimal policy unchanged (the tabular
proof is ``tests/gym/test_pbrs_optimal_policy.py``). ``shaping: naive`` pays the progress itself,
``Phi(s')``, the variant that can trap an agent near high-progress states (Robo-Dopamine's "semantic
trap", arXiv 2512.23703). Per step this is :func:`polyreward.shaping.potential_shaping` with zero
base reward; it is computed inside each sub-env, so truncation keeps ``Phi(s')``.

A potential is ``phi(obs, env) -> float``: ``obs`` the sub-env's flat observation, ``env`` its
unwrapped env (for state the observation hides, such as MiniGrid's ``agent_pos``). Config names one
by a built-in name (:data:`BUILTIN_POTENTIALS`) or an import path ``"package.module:function"``.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from polyreward.config import ConfigError

Potential = Callable[[np.ndarray, gym.Env], float]


def minigrid_goal_distance(obs: np.ndarray, env: gym.Env) -> float:
    """``-(|dx| + |dy|) / (width + height)``: the agent's Manhattan distance to the goal square, in
    ``[-1, 0]`` (0 at the goal). Needs a MiniGrid env with a ``Goal`` object."""
    cells = ((x, y) for x in range(env.grid.width) for y in range(env.grid.height))
    goal = next((xy for xy in cells if _is_goal(env.grid.get(*xy))), None)  # layouts change per episode
    if goal is None:
        raise ValueError("shaping_potential 'minigrid_goal_distance': the grid has no goal square")
    ax, ay = env.agent_pos
    return -(abs(ax - goal[0]) + abs(ay - goal[1])) / (env.grid.width + env.grid.height)


def _is_goal(cell) -> bool:
    return cell is not None and cell.type == "goal"


BUILTIN_POTENTIALS: dict[str, Potential] = {"minigrid_goal_distance": minigrid_goal_distance}


def resolve_potential(spec: str) -> Potential:
    """The potential named ``spec``: a built-in name or ``"package.module:function"``."""
    if spec in BUILTIN_POTENTIALS:
        return BUILTIN_POTENTIALS[spec]
    if ":" not in spec:
        close = difflib.get_close_matches(spec, list(BUILTIN_POTENTIALS), n=3)
        hint = f"; did you mean {close}?" if close else ""
        raise ConfigError(
            f"shaping_potential: {spec!r} is neither a built-in ({sorted(BUILTIN_POTENTIALS)}) "
            f"nor an import path 'package.module:function'{hint}"
        )
    module_name, _, attribute = spec.partition(":")
    try:
        potential = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"shaping_potential: cannot import {spec!r} ({type(err).__name__}: {err})") from err
    if not callable(potential):
        raise ConfigError(f"shaping_potential: {spec!r} is not callable")
    return potential


@dataclasses.dataclass(frozen=True)
class Shaping:
    """The ``"shaping"`` component of one sub-env (picklable: the potential travels as its name)."""

    mode: str  # "pbrs" or "naive"
    potential: str
    gamma: float
    terminal: str = "zero"  # "zero" or "keep"

    def reward(self, phi: float, phi_next: float, terminated: bool) -> float:
        """``gamma * Phi(s') - Phi(s)`` (``Phi(s') = 0`` after a terminal step under ``"zero"``), or
        ``Phi(s')`` for ``"naive"``."""
        if self.mode == "naive":
            return phi_next
        following = 0.0 if terminated and self.terminal == "zero" else phi_next
        return self.gamma * following - phi
