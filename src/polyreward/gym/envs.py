"""Vectorized environments whose reward is a set of named components.

``make_vec_env(config) -> RewardVecEnv``. Each step yields ``rewards[E, K]``: the environment's own
reward (one component ``"reward"``, or one per entry of an MO-Gymnasium vector reward), then one
component per ``info`` key in ``config.info_rewards``, then the exploration bonus ``"bonus"``.

Autoreset: Gymnasium 1.x vector envs reset a finished sub-env on the *next* ``step`` call by
default (``AutoresetMode.NEXT_STEP``), which inserts a step whose action is ignored. We build the
vector env with ``AutoresetMode.DISABLED`` and reset finished sub-envs ourselves right after the
step (``reset(options={"reset_mask": done})``), so every step is a real transition and the true
final observation of a truncated episode is at hand for bootstrapping (``Step.final_obs``).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from polyreward.config import ConfigError
from polyreward.gym.config import GymConfig, bonus_kinds
from polyreward.gym.potentials import Shaping, resolve_potential
from polyreward.gym.snapshot import restore_env, snapshot_env
from polyreward.shaping import combine_bonuses

REWARD_KEY, STATE_KEY = "polyreward/reward", "polyreward/state_key"

# Component names of MO-Gymnasium 1.3 vector rewards, in index order, from each env's docstring.
KNOWN_REWARD_NAMES: dict[str, tuple[str, ...]] = {
    "deep-sea-treasure-v0": ("treasure", "time"),
    "deep-sea-treasure-concave-v0": ("treasure", "time"),
    "deep-sea-treasure-mirrored-v0": ("treasure", "time"),
    "four-room-v0": ("blue", "green", "red"),
    "resource-gathering-v0": ("death", "gold", "diamond"),
    "minecart-v0": ("ore1", "ore2", "fuel"),
    "minecart-deterministic-v0": ("ore1", "ore2", "fuel"),
    "mo-mountaincar-v0": ("time", "reverse", "forward"),
    "mo-lunar-lander-v3": ("landing", "shaping", "main_fuel", "side_fuel"),
}


class EnvError(ValueError):
    """An environment id, its reward names or its info keys do not fit the config."""


def _register_optional_envs() -> None:
    """Import the packages that register ids in gymnasium's registry (each is optional)."""
    import contextlib
    import importlib

    for module in ("mo_gymnasium", "minigrid", "metaworld"):
        with contextlib.suppress(ImportError):  # not installed: its ids are simply not registered
            importlib.import_module(module)


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registry entry of ``env_id``; an unknown id is an error listing close matches."""
    _register_optional_envs()
    if env_id in gym.registry:
        return gym.registry[env_id]
    ids = list(gym.registry)
    lowered = {i.lower(): i for i in ids}
    close = difflib.get_close_matches(env_id.lower(), list(lowered), n=5, cutoff=0.6)
    close = [lowered[c] for c in close] or [i for i in ids if env_id.lower() in i.lower()][:5]
    hint = f"; did you mean {close}?" if close else ""
    raise EnvError(f"env_id: unknown environment {env_id!r}{hint} ({len(ids)} ids are registered)")


def is_multi_objective(spec: gym.envs.registration.EnvSpec) -> bool:
    entry = spec.entry_point
    module = entry if isinstance(entry, str) else getattr(entry, "__module__", "")
    return module.startswith("mo_gymnasium")


class FlattenObservations(gym.ObservationWrapper):
    """``gymnasium.spaces.flatten`` of every observation, like Gymnasium's ``FlattenObservation``,
    whose lambda cannot be pickled into an env snapshot."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.observation_space = gym.spaces.flatten_space(env.observation_space)

    def observation(self, observation):
        return gym.spaces.flatten(self.env.observation_space, observation)


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None) -> gym.Env:
    """One environment with a flat ``Box`` observation (MO ids through ``mo_gymnasium.make``).

    Observation handling: MiniGrid's ``Dict(image, direction, mission)`` keeps the image
    (``ImgObsWrapper``); any other non-Box space (``Discrete``, ``Dict``, ``Tuple``) is flattened with
    :class:`FlattenObservations` (``Discrete`` becomes one-hot).
    """
    spec = env_spec(env_id)
    if is_multi_objective(spec):
        import mo_gymnasium

        env = mo_gymnasium.make(env_id, **(env_kwargs or {}))
    else:
        env = gym.make(env_id, **(env_kwargs or {}))
    space = env.observation_space
    if isinstance(space, gym.spaces.Dict) and "image" in space.spaces and "mission" in space.spaces:
        from minigrid.wrappers import ImgObsWrapper

        env = ImgObsWrapper(env)
    if not (isinstance(env.observation_space, gym.spaces.Box) and len(env.observation_space.shape) == 1):
        env = FlattenObservations(env)
    return env


def reward_names(env: gym.Env, env_id: str, given: Sequence[str] = ()) -> list[str]:
    """Names of the environment's own reward components.

    Scalar reward: ``["reward"]`` (or the one given name). Vector reward of dimension D (from
    ``reward_space``): the given names (exactly D), else names the env provides
    (``unwrapped.reward_names``), else :data:`KNOWN_REWARD_NAMES`, else ``obj0 .. obj{D-1}``.
    """
    space = getattr(env.unwrapped, "reward_space", None)
    dim = 1 if space is None else int(np.prod(space.shape))
    shape = "a scalar reward" if space is None else f"a {dim}-dimensional reward (reward_space.shape = {space.shape})"
    if given:
        if len(given) != dim:
            raise EnvError(f"reward_names: {len(given)} names {list(given)} but {env_id!r} has {shape}")
        return list(given)
    if space is None:
        return ["reward"]
    provided = getattr(env.unwrapped, "reward_names", None) or env.unwrapped.metadata.get("reward_names")
    for names in (provided, KNOWN_REWARD_NAMES.get(env_id)):
        if names is not None and len(names) == dim:
            return list(names)
    return [f"obj{i}" for i in range(dim)]


def state_key(data: bytes) -> int:
    """A stable 63-bit hash of a state's bytes (the same in every process, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


class ComponentWrapper(gym.Wrapper):
    """Puts the reward components of each step in ``info["polyreward/reward"]`` (``[K]`` float64).

    The components are the env's reward (scalar or vector), then ``float(info[key])`` for each of
    ``info_keys``, then the ``shaping`` reward (:mod:`polyreward.gym.potentials`) when given. The
    scalar reward passed on is their plain sum. With ``key_mode`` set, the state
    key for count bonuses goes to ``info["polyreward/state_key"]`` on reset and on every step.
    """

    def __init__(
        self,
        env: gym.Env,
        env_id: str,
        info_keys: Sequence[str] = (),
        key_mode: str | None = None,
        shaping: Shaping | None = None,
    ):
        super().__init__(env)
        self.env_id, self.info_keys, self.key_mode, self.shaping = env_id, tuple(info_keys), key_mode, shaping
        self._potential = resolve_potential(shaping.potential) if shaping else None
        self._phi = 0.0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if self.key_mode:
            info[STATE_KEY] = self._key(obs)
        if self._potential is not None:
            self._phi = float(self._potential(obs, self.env.unwrapped))
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        parts = [np.asarray(reward, dtype=np.float64).reshape(-1)]
        for key in self.info_keys:
            if key not in info:
                raise EnvError(
                    f"info_rewards: key {key!r} is not in the step info of {self.env_id!r}; info keys: {sorted(info)}"
                )
            parts.append(np.asarray(info[key], dtype=np.float64).reshape(1))
        if self.shaping is not None:
            phi_next = float(self._potential(obs, self.env.unwrapped))
            parts.append(np.array([self.shaping.reward(self._phi, phi_next, bool(terminated))]))
            self._phi = phi_next
        vector = np.concatenate(parts)
        info[REWARD_KEY] = vector
        if self.key_mode:
            info[STATE_KEY] = self._key(obs)
        return obs, float(vector.sum()), terminated, truncated, info

    def snapshot(self) -> bytes:
        """:func:`snapshot_env` of this sub-env (``VectorEnv.call("snapshot")`` reaches async workers too)."""
        return snapshot_env(self)

    def _key(self, obs) -> int:
        if self.key_mode == "agent_pos":
            pos = getattr(self.env.unwrapped, "agent_pos", None)
            if pos is None:
                raise EnvError(f"bonus_key: 'agent_pos' but {self.env_id!r} has no env.unwrapped.agent_pos; use 'obs'")
            return state_key(np.asarray(pos, dtype=np.int64).tobytes())
        return state_key(np.ascontiguousarray(obs).tobytes())


class EpisodicCount:
    """Episodic first-visit indicator ``1[N_e(s) == 1]`` per env (Henaff et al. 2023, arXiv 2306.03236).

    ``step(keys[N], episode_start[N]) -> first_visit[N]`` (float64): the visit sets of envs with
    ``episode_start`` are cleared before counting.
    """

    def __init__(self, num_envs: int):
        self.visited: list[set[Hashable]] = [set() for _ in range(num_envs)]

    def step(self, keys: Sequence[Hashable], episode_start: Sequence[bool] | np.ndarray) -> np.ndarray:
        out = np.zeros(len(keys))
        for i, (key, start) in enumerate(zip(keys, episode_start, strict=True)):
            if start:
                self.visited[i].clear()
            if key not in self.visited[i]:
                self.visited[i].add(key)
                out[i] = 1.0
        return out


class GlobalCount:
    """Lifetime count bonus ``1 / sqrt(N_g(s))``, ``N_g`` including the current visit (Henaff et al. 2023)."""

    def __init__(self, counts: dict[Hashable, int] | None = None):
        self.counts: Counter = Counter(counts or {})

    def step(self, keys: Sequence[Hashable]) -> np.ndarray:
        out = np.zeros(len(keys))
        for i, key in enumerate(keys):
            self.counts[key] += 1
            out[i] = self.counts[key] ** -0.5
        return out


@dataclasses.dataclass
class Step:
    """One vector step. ``obs[E, D]``: what the policy sees next (reset observations where an episode
    ended); ``final_obs[E, D]``: the true ``s_{t+1}`` of every env (equal to ``obs`` where the episode
    goes on); ``rewards[E, K]``; ``terminated[E]``, ``truncated[E]``; ``episode_returns[M, K]`` and
    ``episode_lengths[M]`` of the M episodes that ended at this step, in envs ``episode_envs[M]``."""

    obs: np.ndarray
    final_obs: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode_returns: np.ndarray
    episode_lengths: np.ndarray
    episode_envs: np.ndarray
    bonus_parts: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    """The count parts of the bonus, ``{"episodic" | "global": [E]}``, for the trainer to combine
    with learned parts (:class:`polyreward.gym.exploration.ExplorationBonus`)."""
    episode_tasks: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """``[M]``: the task index of each ended episode (task-set envs with a ``task_chooser``; else empty)."""


class RewardVecEnv:
    """A Gymnasium ``VectorEnv`` (autoreset disabled, sub-envs wrapped in :class:`ComponentWrapper`)
    seen as steps of named reward components plus an optional exploration bonus ``"bonus"``.

    The env computes the count parts of the bonus (``episodic_bonus`` / ``global_bonus`` = ``"count"``).
    When every part in use is a count, the ``"bonus"`` column is their combination; otherwise it is 0
    here and the trainer fills it in from ``Step.bonus_parts`` and its learned parts (E3B, RND, NovelD).
    """

    def __init__(
        self,
        vec_env: gym.vector.VectorEnv,
        names: Sequence[str],
        bonus: str = "none",
        bonus_global_coef: float = 1.0,
        task_names: Sequence[str] | None = None,
        episodic_bonus: str = "count",
        global_bonus: str = "count",
    ):
        mode = vec_env.metadata.get("autoreset_mode")
        if mode != AutoresetMode.DISABLED:
            raise EnvError(
                f"RewardVecEnv: the vector env's autoreset_mode is {mode}; build it with "
                "autoreset_mode=AutoresetMode.DISABLED (or use make_vec_env) so that a truncated episode's "
                "final observation reaches the value bootstrap and no reset step enters the rollout"
            )
        self.vec_env, self.bonus, self.bonus_global_coef = vec_env, bonus, bonus_global_coef
        self.episodic_bonus, self.global_bonus = episodic_bonus, global_bonus
        kinds = bonus_kinds(bonus, episodic_bonus, global_bonus)
        self.count_parts = tuple(part for part, kind in kinds.items() if kind == "count")
        self._all_counts = len(self.count_parts) == len(kinds)
        self.env_names = list(names)
        self.names = self.env_names + (["bonus"] if bonus != "none" else [])
        self.num_envs = vec_env.num_envs
        if task_names is not None and len(task_names) != self.num_envs:
            raise EnvError(f"RewardVecEnv: {len(task_names)} task names {list(task_names)} for {self.num_envs} envs")
        # the task each sub-env runs (multi-task benchmarks such as Meta-World MT10), else None
        self.task_names = None if task_names is None else list(task_names)
        # task-set envs (polyreward.gym.curriculum): the task names, and a trainer's chooser
        # n -> task index[n] for the next episodes of n sub-envs; env_tasks[E]: the task each env runs
        self.task_set: list[str] | None = None
        self.task_chooser = None
        self.env_tasks = np.zeros(self.num_envs, dtype=np.int64)
        self.single_observation_space = vec_env.single_observation_space
        self.single_action_space = vec_env.single_action_space
        self.obs_dim = int(np.prod(self.single_observation_space.shape))
        self.episodic, self.global_count = EpisodicCount(self.num_envs), GlobalCount()
        self._returns = np.zeros((self.num_envs, len(self.names)))
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        space = self.single_action_space
        self._clip = (space.low, space.high) if isinstance(space, gym.spaces.Box) else None

    def reset(self, seed: int | None = None) -> np.ndarray:
        self._choose_tasks(np.ones(self.num_envs, dtype=bool))
        obs, info = self.vec_env.reset(seed=seed)
        self._returns[:], self._lengths[:] = 0.0, 0
        if self.bonus != "none":
            self._count_start(info, np.ones(self.num_envs, dtype=bool))
        return self._flat(obs)

    def step(self, actions: np.ndarray) -> Step:
        if self._clip is not None:
            actions = np.clip(actions, *self._clip)
        obs, _, terminated, truncated, info = self.vec_env.step(actions)
        rewards = self._components(info)
        parts = self._count_parts(info)
        if self.bonus != "none":
            rewards = np.concatenate([rewards, self._bonus(parts)[:, None]], axis=1)
        final_obs = self._flat(obs)
        done = terminated | truncated
        self._returns += rewards
        self._lengths += 1
        episode_returns, episode_lengths = self._returns[done].copy(), self._lengths[done].copy()
        episode_tasks = self._choose_tasks(done)
        if done.any():
            self._returns[done], self._lengths[done] = 0.0, 0
            obs, reset_info = self.vec_env.reset(options={"reset_mask": done})
            if self.bonus != "none":
                self._count_start(reset_info, done)
            next_obs = self._flat(obs)
        else:
            next_obs = final_obs
        return Step(
            next_obs,
            final_obs,
            rewards.astype(np.float32),
            terminated,
            truncated,
            episode_returns,
            episode_lengths,
            np.flatnonzero(done),
            parts,
            episode_tasks,
        )

    def close(self) -> None:
        self.vec_env.close()

    # ------------------------------------------------------------------ resume
    def snapshot(self) -> list[bytes]:
        """One :func:`snapshot_env` per sub-env (episodes in progress, RNG); rebuild with
        ``make_vec_env(config, snapshots=...)``."""
        return list(self.vec_env.call("snapshot"))

    def state_dict(self) -> dict[str, Any]:
        """Running episode returns and lengths and the count-bonus memories."""
        return {
            "returns": self._returns.copy(),
            "lengths": self._lengths.copy(),
            "visited": [set(v) for v in self.episodic.visited],
            "global_counts": dict(self.global_count.counts),
            "env_tasks": self.env_tasks.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._returns[:], self._lengths[:] = state["returns"], state["lengths"]
        self.env_tasks[:] = state.get("env_tasks", self.env_tasks)
        self.episodic.visited = [set(v) for v in state["visited"]]
        self.global_count.counts = Counter(state["global_counts"])

    # ------------------------------------------------------------------ helpers
    def _choose_tasks(self, mask: np.ndarray) -> np.ndarray:
        """With a ``task_chooser``: the tasks of the episodes ending in ``mask[E]``, after giving those
        envs their next task (applied at their reset); else an empty array."""
        if self.task_chooser is None or not mask.any():
            return np.zeros(0, dtype=np.int64)
        ended = self.env_tasks[mask].copy()
        self.env_tasks[mask] = self.task_chooser(int(mask.sum()))
        self.vec_env.set_attr("next_task", self.env_tasks.tolist())
        return ended

    def _flat(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(obs, dtype=np.float32).reshape(self.num_envs, -1)

    def _components(self, info: dict) -> np.ndarray:
        if REWARD_KEY not in info or not info[f"_{REWARD_KEY}"].all():
            raise EnvError(
                f"RewardVecEnv: step info lacks {REWARD_KEY!r}; wrap every sub-env in ComponentWrapper (make_vec_env does)"
            )
        rewards = info[REWARD_KEY]
        if rewards.shape[1] != len(self.env_names):
            raise EnvError(f"RewardVecEnv: sub-envs return {rewards.shape[1]} reward components, names are {self.env_names}")
        return rewards

    def _count_parts(self, info: dict) -> dict[str, np.ndarray]:
        """``{"episodic": first_visit[E], "global": 1/sqrt(N_g)[E]}`` for the count parts in use."""
        parts: dict[str, np.ndarray] = {}
        if not self.count_parts:
            return parts
        keys = info[STATE_KEY].tolist()
        if "episodic" in self.count_parts:
            parts["episodic"] = self.episodic.step(keys, np.zeros(self.num_envs, dtype=bool))
        if "global" in self.count_parts:
            parts["global"] = self.global_count.step(keys)
        return parts

    def _bonus(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        """The ``"bonus"`` column: the count parts combined, or 0 where a learned part is missing."""
        if not self._all_counts:
            return np.zeros(self.num_envs)
        if len(parts) == 1:
            return next(iter(parts.values()))
        import torch

        combined = combine_bonuses(
            torch.from_numpy(parts["global"]), torch.from_numpy(parts["episodic"]), self.bonus, self.bonus_global_coef
        )
        return combined.numpy()

    def _count_start(self, info: dict, started: np.ndarray) -> None:
        """Register the first state of each new episode (it is visited, but earns no bonus)."""
        if not self.count_parts:
            return
        for i in np.flatnonzero(started):
            key = int(info[STATE_KEY][i])
            self.episodic.visited[i] = {key}
            if "global" in self.count_parts:
                self.global_count.counts[key] += 1


@dataclasses.dataclass(frozen=True)
class EnvBuilder:
    """Builds one wrapped sub-env; a picklable class (not a closure) so that AsyncVectorEnv workers
    and checkpoints of a SyncVectorEnv can carry it."""

    env_id: str
    env_kwargs: dict[str, Any]
    info_keys: tuple[str, ...] = ()
    key_mode: str | None = None
    snapshot: bytes | None = None  # a ComponentWrapper.snapshot() to resume instead of a fresh env
    shaping: Shaping | None = None

    def __call__(self) -> gym.Env:
        if self.snapshot is not None:
            return restore_env(self.snapshot)
        return ComponentWrapper(self.make(), self.env_id, self.info_keys, self.key_mode, self.shaping)

    def make(self) -> gym.Env:
        """The raw env, before :class:`ComponentWrapper` (subclasses build other kinds)."""
        return make_env(self.env_id, self.env_kwargs)


def make_vec_env(config: GymConfig, snapshots: Sequence[bytes] | None = None) -> RewardVecEnv:
    """``config.num_envs`` copies of ``config.env_id`` as a :class:`RewardVecEnv` (sync or async).

    ``snapshots``: one :meth:`ComponentWrapper.snapshot` per sub-env (from
    :meth:`RewardVecEnv.snapshot`) to continue those envs mid-episode instead of building fresh ones.
    Errors (naming the config field): unknown id (with close matches), ``reward_names`` of the
    wrong length, component names that collide. Meta-World ids (``"Meta-World/MT10"``, ...) are
    built by :func:`polyreward.gym.meta_world.make_metaworld`.
    """
    if config.tasks:
        from polyreward.gym.curriculum import make_task_vec_env

        return make_task_vec_env(config, snapshots)
    if config.env_id.startswith("Meta-World/"):
        from polyreward.gym.meta_world import make_metaworld

        return make_metaworld(config, snapshots)
    probe = make_env(config.env_id, config.env_kwargs)
    try:
        own = reward_names(probe, config.env_id, config.reward_names)
    finally:
        probe.close()
    build = EnvBuilder(config.env_id, dict(config.env_kwargs))
    return vector_env([build] * config.num_envs, config, own, snapshots)


def vector_env(
    builders: Sequence[Any],
    config: GymConfig,
    own: Sequence[str],
    snapshots: Sequence[bytes] | None = None,
    task_names: Sequence[str] | None = None,
) -> RewardVecEnv:
    """A :class:`RewardVecEnv` over picklable sub-env ``builders`` (:class:`EnvBuilder` dataclasses):
    ``config.vector`` sync/async, autoreset disabled, components ``own + info_rewards (+ shaping)``.
    The builders get the config's ``info_rewards``, count-bonus state key and shaping here.

    Errors: component names that collide; ``snapshots`` (one per builder) of the wrong count.
    """
    shaped = ["shaping"] if config.shaping != "none" else []
    names = [*own, *config.info_rewards, *shaped] + (["bonus"] if config.bonus != "none" else [])
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"info_rewards / reward_names: component names {duplicates} are used twice in {names}")
    if snapshots is not None and len(snapshots) != len(builders):
        raise ConfigError(f"num_envs: {len(builders)} envs but {len(snapshots)} saved env snapshots")
    shaping = None
    if shaped:
        resolve_potential(config.shaping_potential)  # a bad name fails here, not in a worker
        shaping = Shaping(config.shaping, config.shaping_potential, config.gamma, config.shaping_terminal)
    kinds = bonus_kinds(config.bonus, config.episodic_bonus, config.global_bonus)
    key_mode = config.bonus_key if "count" in kinds.values() else None
    builders = [
        dataclasses.replace(b, info_keys=tuple(config.info_rewards), key_mode=key_mode, shaping=shaping) for b in builders
    ]
    if snapshots is not None:
        builders = [dataclasses.replace(b, snapshot=s) for b, s in zip(builders, snapshots, strict=True)]
    vector_cls = gym.vector.SyncVectorEnv if config.vector == "sync" else gym.vector.AsyncVectorEnv
    vec = vector_cls(list(builders), autoreset_mode=AutoresetMode.DISABLED)
    return RewardVecEnv(
        vec,
        [*own, *config.info_rewards, *shaped],
        config.bonus,
        config.bonus_global_coef,
        task_names,
        episodic_bonus=config.episodic_bonus,
        global_bonus=config.global_bonus,
    )
