"""Environment snapshots for exact resume: ``restore_env(snapshot_env(env))`` continues the same
episode with the same random stream.

Plain ``pickle`` rebuilds a :class:`~gymnasium.utils.EzPickle` env (MO-Gymnasium, MuJoCo, Meta-World)
from its constructor arguments, i.e. a fresh env. The pickler here keeps such objects' attributes
instead, and stores a MuJoCo ``MjData`` as its integration state (``mj_getState``, a few hundred
floats) rather than its whole memory arena. Snapshots are zlib-compressed.
"""

from __future__ import annotations

import io
import pickle
import zlib
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import EzPickle


class _StatePickler(pickle.Pickler):
    def reducer_override(self, obj):
        if isinstance(obj, EzPickle):
            return _blank_instance, (type(obj),), dict(obj.__dict__), None, None, _set_attributes
        if type(obj).__name__ == "MjData" and type(obj).__module__.startswith("mujoco"):
            return _mjdata_from_state, (obj.model, _mjdata_state(obj))
        return NotImplemented


def _blank_instance(cls: type) -> Any:
    return cls.__new__(cls)


def _set_attributes(obj: Any, attributes: dict[str, Any]) -> None:
    obj.__dict__.update(attributes)


def _mjdata_state(data) -> np.ndarray:
    """``[S]`` float64: time, qpos, qvel, act, warm start, controls, applied forces, mocap, userdata."""
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(data.model, spec))
    mujoco.mj_getState(data.model, data, state, spec)
    return state


def _mjdata_from_state(model, state: np.ndarray):
    """A fresh ``MjData`` of ``model`` set to ``state`` with its derived quantities recomputed."""
    import mujoco

    data = mujoco.MjData(model)
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    mujoco.mj_setState(model, data, state, spec)
    mujoco.mj_forward(model, data)
    mujoco.mj_setState(model, data, state, spec)  # mj_forward moves the solver's warm start; put it back
    return data


def snapshot_env(env: gym.Env) -> bytes:
    """The whole state of ``env`` and its wrappers (positions, step counters, RNG) as bytes."""
    buffer = io.BytesIO()
    _StatePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(env)
    return zlib.compress(buffer.getvalue(), 1)


def restore_env(snapshot: bytes) -> gym.Env:
    """The env saved by :func:`snapshot_env`."""
    return pickle.loads(zlib.decompress(snapshot))
