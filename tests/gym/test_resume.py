"""Exact resume of the gym trainer: env snapshots mid-episode, and a run stopped at a checkpoint and
continued in a fresh PPO ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from polyreward.gym import PPO, GymConfig, make_env
from polyreward.gym.envs import ComponentWrapper
from polyreward.gym.snapshot import restore_env, snapshot_env


def _rollout(env, actions, seed_on_reset: int) -> list[tuple]:
    out = []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        out.append((np.asarray(obs).tolist(), np.asarray(reward).tolist(), terminated, truncated))
        if terminated or truncated:
            obs, _ = env.reset()  # no seed: the env's own RNG stream continues
            out.append(np.asarray(obs).tolist())
    return out


@pytest.mark.parametrize(
    "env_id", ["deep-sea-treasure-v0", "four-room-v0", "resource-gathering-v0", "MiniGrid-DoorKey-5x5-v0", "CartPole-v1"]
)
def test_snapshot_continues_the_episode_and_the_random_stream(env_id):
    env = ComponentWrapper(make_env(env_id), env_id)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for action in rng.integers(0, env.action_space.n, 9):
        if any(env.step(int(action))[2:4]):
            env.reset()
    copy = restore_env(snapshot_env(env))
    actions = [int(a) for a in rng.integers(0, env.action_space.n, 60)]
    assert _rollout(copy, actions, 0) == _rollout(env, actions, 0)


def test_plain_pickle_loses_the_episode_of_an_ezpickle_env():
    """Why snapshots exist: MO-Gymnasium envs pickle their constructor arguments only."""
    import pickle

    env = make_env("deep-sea-treasure-v0")
    env.reset(seed=0)
    env.step(1)  # down: the submarine leaves the start cell
    moved = np.asarray(env.unwrapped.current_state).tolist()
    assert np.asarray(pickle.loads(pickle.dumps(env)).unwrapped.current_state).tolist() != moved
    assert np.asarray(restore_env(snapshot_env(env)).unwrapped.current_state).tolist() == moved


def test_metaworld_snapshot_keeps_the_physics_state_and_stays_small():
    from polyreward.gym import GymConfig, make_vec_env

    config = GymConfig(env_id="Meta-World/MT1", env_kwargs={"env_name": "reach-v3"}, num_envs=1, minibatches=1)
    env = make_vec_env(config)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        env.step(rng.uniform(-1, 1, (1, 4)).astype(np.float32))
    original = env.vec_env.envs[0]
    snapshot = original.snapshot()
    assert len(snapshot) < 12_000_000  # was 42 MB: MjData as its integration state (not its arena), compressed
    copy = restore_env(snapshot)
    for _ in range(30):
        action = rng.uniform(-1, 1, 4).astype(np.float32)
        a, b = original.step(action), copy.step(action)
        assert np.array_equal(a[0], b[0]) and a[1] == b[1] and a[2:4] == b[2:4]
    env.close()


def _records(run_dir) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/") and k != "charts/sps"} for line in lines]


@pytest.mark.parametrize(
    ("env_id", "extra"),
    [
        ("deep-sea-treasure-v0", {"bonus": "product"}),
        ("MiniGrid-Empty-5x5-v0", {"bonus": "sum", "bonus_key": "agent_pos"}),
        ("four-room-v0", {"vector": "async"}),  # snapshots come back from the worker processes
    ],
)
def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, env_id, extra):
    # num_steps 24 and episodes of 100+ steps (MiniGrid) / up to 100 (DST): checkpoints fall mid-episode
    config = GymConfig(env_id=env_id, num_envs=2, num_steps=24, minibatches=2, epochs=2, save_every=2, **extra)
    whole = PPO(env_id, GymConfig(**{**config.__dict__, "output_dir": str(tmp_path / "whole")})).learn(240, progress=False)

    first = PPO(env_id, GymConfig(**{**config.__dict__, "output_dir": str(tmp_path / "cut")}))
    first.learn(240, progress=False, callback=lambda ppo, _: ppo.update < 4)  # stops after update 4 (a checkpoint)
    assert first.global_step == 4 * 48
    del first
    torch.manual_seed(1234)  # a fresh process would not share the RNG state; load must restore it
    np.random.seed(99)
    resumed = PPO.load(tmp_path / "cut").learn(240, progress=False)

    assert resumed.global_step == whole.global_step == 240
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert _records(tmp_path / "cut") == _records(tmp_path / "whole")
    assert resumed.env.state_dict()["global_counts"] == whole.env.state_dict()["global_counts"]
