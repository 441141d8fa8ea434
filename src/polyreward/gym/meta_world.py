"""Meta-World multi-task benchmarks (MT1, MT10 / MT25 / MT50, custom task lists) as a :class:`RewardVecEnv`.

``make_vec_env(GymConfig(env_id="Meta-World/MT10", env_kwargs={"use_one_hot": True}))`` lands here.

Why not ``gym.make_vec("Meta-World/MT10", ...)`` itself: its vector entry point builds its own
Sync/AsyncVectorEnv (``AutoresetMode.SAME_STEP`` by default) from sub-envs we cannot wrap in
:class:`ComponentWrapper`. We build the same sub-envs that metaworld 3.1.1's registered entry points
build (``register_mw_envs`` -> ``make_mt_envs`` -> ``_init_each_env``: ``TimeLimit(500)``,
``AutoTerminateOnSuccessWrapper``, ``OneHotWrapper``, ``RecordEpisodeStatistics``,
``RandomTaskSelectWrapper``), wrap each in :class:`ComponentWrapper` and hand them to our own vector
env with ``AutoresetMode.DISABLED``.

Sub-envs, one task each: ``MT1``: ``num_envs`` copies of ``env_kwargs["env_name"]`` sharing the 50
goal variations of ``metaworld.MT1(env_name, seed)``; ``MT10/25/50``: one per task of the benchmark
(``num_envs`` is the task count); ``custom-mt-envs``: one per name of ``env_kwargs["envs_list"]``
with the goals of ``metaworld.MT1(name, seed + i)``. With ``use_one_hot`` the last ``num_tasks``
observation dims are the task one-hot (:func:`task_id_from_obs`).
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

import gymnasium as gym
import numpy as np

from polyreward.gym.config import GymConfig
from polyreward.gym.envs import EnvBuilder, EnvError, RewardVecEnv, vector_env

PREFIX = "Meta-World/"
BENCHMARKS = ("MT10", "MT25", "MT50")
SUPPORTED = ("Meta-World/MT1", "Meta-World/MT10", "Meta-World/MT25", "Meta-World/MT50", "Meta-World/custom-mt-envs")
# keys of gym.make_vec("Meta-World/...") that this module decides itself
OWNED_KWARGS = {
    "vector_strategy": "vector",
    "autoreset_mode": "(always AutoresetMode.DISABLED)",
    "num_envs": "num_envs",
    "num_goals": "(always 50)",
}


def is_metaworld(env_id: str) -> bool:
    """Whether ``env_id`` is a Meta-World benchmark id (``"Meta-World/..."``)."""
    return env_id.startswith(PREFIX)


def task_id_from_obs(obs: np.ndarray, num_tasks: int) -> np.ndarray:
    """Task index of each row of ``obs[..., D]`` from its one-hot, the last ``num_tasks`` dims -> ``[...]`` int64."""
    return np.asarray(obs)[..., -num_tasks:].argmax(-1).astype(np.int64)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MetaWorldBuilder(EnvBuilder):
    """Builds one Meta-World sub-env as metaworld's registered entry points do (wrapped in
    :class:`ComponentWrapper` by :class:`EnvBuilder`); picklable, so AsyncVectorEnv workers can carry it.

    ``env_kwargs``: keywords of metaworld's ``_init_each_env``; ``goals``: the metaworld ``Task``
    tuples (goal variations) the env samples from at every reset; ``task_index`` / ``num_tasks``:
    the one-hot; ``seed``: the sub-env's own seed (metaworld ignores ``reset(seed=...)``, so this
    seed alone decides which goals the env draws).
    """

    task: str
    env_cls: type
    goals: tuple
    task_index: int
    num_tasks: int
    seed: int | None

    def make(self) -> gym.Env:
        import metaworld

        return metaworld._init_each_env(
            env_cls=self.env_cls,
            tasks=list(self.goals),
            seed=self.seed,
            env_id=self.task_index,
            num_tasks=self.num_tasks,
            **self.env_kwargs,
        )


def _check_kwargs(env_id: str, kwargs: dict[str, Any]) -> None:
    if env_id not in SUPPORTED:
        raise EnvError(f"env_id: {env_id!r} is not supported by the gym trainer; Meta-World ids: {list(SUPPORTED)}")
    owned = sorted(set(kwargs) & set(OWNED_KWARGS))
    if owned:
        fields = {k: OWNED_KWARGS[k] for k in owned}
        raise EnvError(f"env_kwargs: {owned} are set by the trainer for {env_id!r}; use the config fields {fields}")


def _task_names(names: Any, field: str) -> list[str]:
    """Check Meta-World task names (``"reach-v3"``), suggesting close matches for unknown ones."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    names = [names] if isinstance(names, str) else list(names or [])
    if not names:
        raise EnvError(f"env_kwargs.{field}: expected Meta-World task names such as 'reach-v3', got none")
    for name in names:
        if name not in ALL_V3_ENVIRONMENTS:
            close = difflib.get_close_matches(str(name).lower(), list(ALL_V3_ENVIRONMENTS), n=3, cutoff=0.5)
            raise EnvError(f"env_kwargs.{field}: unknown Meta-World task {name!r}; close matches: {close}")
    if len(set(names)) != len(names):
        raise EnvError(f"env_kwargs.{field}: duplicate tasks in {names}")
    return names


def metaworld_builders(config: GymConfig) -> list[MetaWorldBuilder]:
    """One :class:`MetaWorldBuilder` per sub-env for ``config.env_id`` (see the module docstring).

    ``env_kwargs``: ``env_name`` (MT1) or ``envs_list`` (custom-mt-envs), ``seed`` (default
    ``config.seed``), ``use_one_hot`` (default False, as in metaworld), and the other keywords of
    metaworld's ``_init_each_env`` (``max_episode_steps``, ``terminate_on_success``,
    ``reward_function_version``, ...).
    """
    import metaworld

    kwargs = dict(config.env_kwargs)
    _check_kwargs(config.env_id, kwargs)
    seed = kwargs.pop("seed", config.seed)
    kind = config.env_id.removeprefix(PREFIX)
    specs: list[tuple[str, type, tuple, int | None]] = []  # task, class, goals, sub-env seed
    if kind == "MT1":
        names = _task_names(kwargs.pop("env_name", None), "env_name")
        if len(names) != 1:
            raise EnvError(f"env_kwargs.env_name: MT1 runs one task, got {names}; use Meta-World/custom-mt-envs")
        name = names[0]
        bench = metaworld.MT1(name, seed=seed)
        goals = tuple(bench.train_tasks)
        # distinct sub-env seeds: with one shared seed every copy would draw the same goal sequence
        specs = [(name, bench.train_classes[name], goals, _offset(seed, i)) for i in range(config.num_envs)]
    elif kind in BENCHMARKS:
        bench = getattr(metaworld, kind)(seed=seed)
        specs = [
            (name, cls, tuple(t for t in bench.train_tasks if t.env_name == name), seed)
            for name, cls in bench.train_classes.items()
        ]
    else:  # custom-mt-envs; metaworld turns seed 0 into None (unseeded) here, we do not
        for i, name in enumerate(_task_names(kwargs.pop("envs_list", None), "envs_list")):
            bench = metaworld.MT1(name, seed=_offset(seed, i))
            specs.append((name, bench.train_classes[name], tuple(bench.train_tasks), _offset(seed, i)))
    num_tasks = 1 if kind == "MT1" else len(specs)
    return [
        MetaWorldBuilder(
            env_id=f"{PREFIX}{name}",
            env_kwargs=kwargs,
            task=name,
            env_cls=cls,
            goals=goals,
            task_index=0 if kind == "MT1" else i,
            num_tasks=num_tasks,
            seed=env_seed,
        )
        for i, (name, cls, goals, env_seed) in enumerate(specs)
    ]


def _offset(seed: int | None, i: int) -> int | None:
    return None if seed is None else seed + i


def make_metaworld(config: GymConfig, snapshots: list[bytes] | None = None) -> RewardVecEnv:
    """A Meta-World benchmark as a :class:`RewardVecEnv` (autoreset disabled, components
    ``reward`` + ``info_rewards`` (+ ``bonus``)); ``task_names[E]`` names each sub-env's task.

    ``env.num_envs`` is ``config.num_envs`` for MT1 and the task count otherwise. ``snapshots``: as
    in :func:`~polyreward.gym.envs.make_vec_env`.
    """
    builders = metaworld_builders(config)
    if len(config.reward_names) > 1:
        raise EnvError(f"reward_names: {config.reward_names} but {config.env_id!r} has a scalar reward (one name)")
    own = list(config.reward_names) or ["reward"]
    return vector_env(builders, config, own, snapshots, task_names=[b.task for b in builders])
