"""The PVN auxiliary loss and automatic discount scheduling inside the gym PPO trainer: wiring,
bit-identity when off, exact resume with both on, config errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from polyreward.checkpoint import CheckpointError
from polyreward.config import ConfigError
from polyreward.gym import PPO, GymConfig
from polyreward.gym.ads import EpisodeRecorder, ads_gamma
from polyreward.runlog import read_metrics
from tests.gym.test_envs import counter_env
from tests.gym.test_pvn import _one_thread  # noqa: F401  (autouse: one torch thread; two were ~50x slower here)

pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered:UserWarning")

SMALL = {"num_envs": 2, "num_steps": 16, "minibatches": 2, "epochs": 2, "tensorboard": False}
PVN = {"pvn_coef": 1.0, "pvn_tasks": 16, "pvn_sparsity": 0.1}


def _records(run_dir) -> list[dict]:
    """Metrics without the wall-clock ones."""
    return [{k: v for k, v in r.items() if not k.startswith("time/") and k != "charts/sps"} for r in read_metrics(run_dir)]


def _demo_file(tmp_path, demos: np.ndarray, name: str = "demos.npy") -> str:
    path = tmp_path / name
    np.save(path, demos.astype(np.float32))
    return str(path)


# ---------------------------------------------------------------- PVN
def test_pvn_trains_with_ppo_and_its_loss_falls_on_a_fixed_batch(tmp_path):
    """A few PPO updates with the PVN loss, then the same rollout optimized again and again: the TD
    loss falls. pvn_gamma 0.5: on a fixed batch, semi-gradient TD with gamma near 1 need not fall at
    first (targets grow with psi; at 0.9 it fell from 0.37 to 0.24, then rose past 1 by 40 passes)."""
    config = GymConfig(output_dir=str(tmp_path), pvn_gamma=0.5, **PVN, **SMALL)
    ppo = PPO("deep-sea-treasure-v0", config)
    head_before = ppo.pvn.head.linear.weight.detach().clone()
    assert not ppo.pvn.calibrated
    ppo.learn(3 * 32, progress=False)
    records = read_metrics(tmp_path)
    assert all(np.isfinite(r["losses/pvn"]) and r["losses/pvn"] > 0 for r in records)
    assert ppo.pvn.calibrated  # on the first rollout, then frozen
    threshold = ppo.pvn.indicators.threshold.clone()
    assert not torch.equal(ppo.pvn.head.linear.weight, head_before)  # the head is in the optimizer
    assert any(p is ppo.pvn.head.linear.weight for p in ppo.optimizer.param_groups[0]["params"])

    rollout = ppo.collect()  # fixed batch: the same rollout again and again
    adv, returns, _ = ppo.advantages(rollout)
    ppo.optimizer.param_groups[0]["lr"] = 1e-3
    losses = [ppo.optimize(rollout, adv, returns)["losses/pvn"] for _ in range(25)]
    assert losses[-1] < 0.3 * losses[0], losses
    ppo.train_update()
    assert torch.equal(ppo.pvn.indicators.threshold, threshold)


@pytest.mark.parametrize("shared", [False, True])
def test_pvn_gradient_reaches_the_critic_trunk_only_unless_shared(tmp_path, shared):
    config = GymConfig(output_dir=str(tmp_path), shared_trunk=shared, **PVN, **SMALL)
    ppo = PPO("deep-sea-treasure-v0", config)
    ppo._obs = ppo.env.reset(seed=0)
    rollout = ppo.collect()
    ppo.pvn.calibrate(rollout.obs)
    obs, next_obs = rollout.obs.reshape(32, -1), rollout.next_obs.reshape(32, -1)
    _, _, _, features = ppo.model.evaluate_features(obs, rollout.actions.reshape(32))
    torch.testing.assert_close(features, ppo.model.features(obs))
    ppo.pvn.loss(ppo.model, features, rollout.actions.reshape(32), next_obs, rollout.terminated.reshape(32)).backward()
    assert ppo.model.critic_body[0].weight.grad.abs().sum() > 0
    assert ppo.pvn.head.linear.weight.grad.abs().sum() > 0
    actor_grad = ppo.model.actor_body[0].weight.grad
    assert (actor_grad is not None and actor_grad.abs().sum() > 0) == shared
    assert ppo.model.actor_head.weight.grad is None and ppo.model.critic_head.weight.grad is None


@pytest.mark.parametrize(
    ("env_id", "extra"),
    [("deep-sea-treasure-v0", {"trunk": "moe", "pvn_rule": "policy"}), ("Pendulum-v1", {"shared_trunk": True})],
)
def test_pvn_runs_with_moe_policy_rule_and_continuous_actions(tmp_path, env_id, extra):
    config = GymConfig(output_dir=str(tmp_path), **PVN, **SMALL, **extra)
    ppo = PPO(env_id, config).learn(64, progress=False)
    assert ppo.pvn.head.num_actions == (1 if env_id == "Pendulum-v1" else 4)
    keys = set().union(*read_metrics(tmp_path))
    assert "losses/pvn" in keys and ("losses/moe_balance" in keys) == (extra.get("trunk") == "moe")


def test_auxiliaries_off_leave_training_bit_identical_to_the_default_config(tmp_path):
    """pvn_coef = 0 and no ads_demos: whatever the other pvn_* / ads_* fields say, the run is the
    default one (no extra parameters, no draws from the RNGs); pvn_coef > 0 does change it."""
    off = {"pvn_coef": 0.0, "pvn_tasks": 7, "pvn_rule": "policy", "pvn_gamma": 0.5, "ads_alpha": 0.5, "ads_horizon": 9}
    runs = {}
    for name, extra in (("default", {}), ("off", off), ("on", {"pvn_coef": 0.1})):
        config = GymConfig(output_dir=str(tmp_path / name), **SMALL, **extra)
        ppo = PPO("deep-sea-treasure-v0", config).learn(3 * 32, progress=False)
        runs[name] = (_records(tmp_path / name), ppo.model.state_dict(), ppo)
    assert runs["off"][2].pvn is None and runs["off"][2].ads is None and runs["off"][2].gamma == 0.99
    assert runs["off"][0] == runs["default"][0]
    for (key, a), b in zip(runs["default"][1].items(), runs["off"][1].values(), strict=True):
        assert torch.equal(a, b), key
    assert runs["on"][0] != runs["default"][0]


# ---------------------------------------------------------------- ADS
def test_episode_recorder_carries_episodes_across_rollouts_and_caps_them():
    recorder = EpisodeRecorder(num_envs=2, max_frames=4)
    # env 0 counts 0, 1, 2 | 0, 1 ... (episodes of 3 steps); env 1 counts 10, 11, ... (never ends)
    obs = torch.tensor([[[0.0], [10.0]], [[1.0], [11.0]]])
    next_obs = obs + 1
    assert recorder.record(obs, next_obs, np.zeros((2, 2), dtype=bool)) == []
    obs2 = torch.tensor([[[2.0], [12.0]], [[0.0], [13.0]]])
    ended = recorder.record(obs2, obs2 + 1, np.array([[True, False], [False, False]]))
    assert [e[:, 0].tolist() for e in ended] == [[0.0, 1.0, 2.0, 3.0]]  # s_0..s_2 and the final s_3
    state = recorder.state_dict()
    assert state[0][:, 0].tolist() == [0.0] and state[1][:, 0].tolist() == [10.0, 11.0, 12.0, 13.0]  # capped at 4
    copy = EpisodeRecorder(num_envs=2, max_frames=4)
    copy.load_state_dict(state)
    finish = np.array([[True, True]])
    a = recorder.record(torch.tensor([[[1.0], [14.0]]]), torch.tensor([[[2.0], [15.0]]]), finish)
    b = copy.record(torch.tensor([[[1.0], [14.0]]]), torch.tensor([[[2.0], [15.0]]]), finish)
    assert [x.tolist() for x in a] == [y.tolist() for y in b] == [[[0.0], [1.0], [2.0]], [[10.0], [11.0], [12.0], [13.0]]]


def _counter_ppo(tmp_path, demos: np.ndarray) -> PPO:
    """Counter env (obs = steps since reset, episodes of 24 steps, 25 frames 0..24); rollouts of 16
    steps, so every episode spans two rollouts. Horizon 25, k starts at int(0.5 * 25) = 12."""
    config = GymConfig(output_dir=str(tmp_path), ads_demos=_demo_file(tmp_path, demos), ads_progress_start=0.5, **SMALL)
    return PPO(counter_env(limit=24, num_envs=2), config)


def test_ads_advances_on_expert_demos_and_the_advantages_use_its_gamma(tmp_path):
    expert = np.arange(25.0)[None, :, None]
    ppo = _counter_ppo(tmp_path, np.concatenate([expert, expert + 0.1]))
    assert ppo.ads.scheduler.horizon == 25 and ppo.ads.scheduler.progress == 12
    ppo.learn(5 * 32, progress=False)
    records = read_metrics(tmp_path)
    # episodes end in updates 2, 3 and 5; each update advances k by at most ads_max_delta = 5, up to H = 25
    assert [r["ads/progress"] for r in records] == [12, 17, 22, 22, 25]
    assert [r["ads/gamma"] for r in records] == [pytest.approx(ads_gamma(0.2, r["ads/progress"])) for r in records]
    # the last comparison of update 2 was at k = 16 (passed: 12 -> 17 is max_delta steps)
    assert "ads/match_score" not in records[0] and records[1]["ads/match_score"] == 16 == records[1]["ads/ref_score"]
    assert ppo.gamma == pytest.approx(0.2 ** (1 / 25))

    rollout = ppo.collect()
    scheduled = ppo.advantages(rollout)
    ppo.config.gamma = 0.5  # ignored while ADS is on
    torch.testing.assert_close(ppo.advantages(rollout), scheduled)
    schedule, ppo.ads = ppo.ads, None
    ppo.config.gamma = schedule.gamma
    torch.testing.assert_close(ppo.advantages(rollout), scheduled)


def test_ads_does_not_advance_on_random_demos(tmp_path):
    """Demos of some other behaviour: one random sequence of counter values, twice (+ noise). They agree
    with each other (ref score = k) but not with the counting agent, whose match stays low."""
    rng = np.random.default_rng(0)
    random_demo = rng.uniform(0, 24, (25, 1))
    ppo = _counter_ppo(tmp_path, np.stack([random_demo, random_demo + 0.01 * rng.standard_normal((25, 1))]))
    ppo.learn(5 * 32, progress=False)
    records = read_metrics(tmp_path)
    assert [r["ads/progress"] for r in records] == [12] * 5
    assert [r["ads/gamma"] for r in records] == [pytest.approx(ads_gamma(0.2, 12))] * 5
    for r in records:
        if "ads/match_score" in r:
            assert r["ads/ref_score"] == 12 and r["ads/match_score"] < int(0.9 * 12)


# ---------------------------------------------------------------- resume, config
def test_resumed_run_with_pvn_and_ads_is_bit_identical(tmp_path):
    # DST positions (row, col) of a dive straight down, twice; k starts at 3 and, with a low threshold,
    # advances by one in each update with finished episodes (also after the checkpoint)
    dive = np.stack([np.arange(10.0), np.zeros(10)], axis=1)
    ads = {"ads_demos": _demo_file(tmp_path, np.stack([dive, dive + 0.1])), "ads_threshold": 0.3, "ads_max_delta": 1}
    config = GymConfig(num_envs=2, num_steps=24, minibatches=2, epochs=2, save_every=2, ads_progress_start=0.3, **ads, **PVN)
    whole = PPO("deep-sea-treasure-v0", dataclasses.replace(config, output_dir=str(tmp_path / "whole")))
    whole.learn(240, progress=False)

    first = PPO("deep-sea-treasure-v0", dataclasses.replace(config, output_dir=str(tmp_path / "cut")))
    first.learn(240, progress=False, callback=lambda ppo, _: ppo.update < 4)
    saved = first.ads.state_dict()
    assert first.global_step == 4 * 48 and any(frames is not None for frames in saved["episodes"])
    del first
    torch.manual_seed(1234)
    np.random.seed(99)
    resumed = PPO.load(tmp_path / "cut")
    restored = resumed.ads.state_dict()
    assert restored["progress"] == saved["progress"]
    for a, b in zip(restored["episodes"], saved["episodes"], strict=True):  # the episodes in progress
        assert (a is None and b is None) or np.array_equal(a, b)
    resumed.learn(240, progress=False)

    records = _records(tmp_path / "whole")
    assert _records(tmp_path / "cut") == records
    progress = [r["ads/progress"] for r in records]
    assert progress[3] < progress[4]  # update 5 (after the checkpoint) moved k on from the restored value
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for (name, a), b in zip(whole.pvn.state_dict().items(), resumed.pvn.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert resumed.ads.state_dict()["progress"] == whole.ads.state_dict()["progress"]
    with pytest.raises(CheckpointError, match="pvn_coef cannot switch"):
        PPO.load(tmp_path / "cut", pvn_coef=0.0, output_dir=str(tmp_path / "other"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"pvn_rule": "mean"}, r"pvn_rule='mean' is not one of \['max', 'policy'\]"),
        ({"pvn_coef": -1.0}, r"pvn_coef: must be >= 0"),
        ({"pvn_sparsity": 1.0}, r"pvn_sparsity: must be in \(0, 1\)"),
        ({"pvn_gamma": 1.0}, r"pvn_gamma: must be in \[0, 1\)"),
        ({"pvn_tasks": 0}, r"pvn_tasks: must be >= 1"),
        ({"ads_metric": "manhattan"}, r"ads_metric='manhattan' is not one of"),
        ({"ads_alpha": 1.0}, r"ads_alpha: must be in \(0, 1\)"),
        ({"ads_threshold": 0.0}, r"ads_threshold: must be in \(0, 1\]"),
        ({"ads_agent_pct": 101.0}, r"ads_agent_pct: must be in \[0, 100\]"),
        ({"ads_max_delta": 0}, r"ads_max_delta: must be >= 1"),
        ({"ads_horizon": 4, "ads_progress_start": 0.2}, r"ads_progress_start: 0.2 \* ads_horizon 4"),
    ],
)
def test_config_errors_name_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        GymConfig(**fields)


def test_demo_file_errors_name_the_file_and_the_expected_shape(tmp_path):
    def build(path, **extra):
        return PPO("deep-sea-treasure-v0", GymConfig(output_dir=str(tmp_path), ads_demos=path, **SMALL, **extra))

    expected = r"expected an array \[N >= 2 demos, T frames, D = 2 observation features\]"
    with pytest.raises(ConfigError, match=rf"ads_demos: {tmp_path}/missing.npy is not a file; {expected}"):
        build(str(tmp_path / "missing.npy"))
    wrong_dim = _demo_file(tmp_path, np.zeros((2, 5, 3)), "dim3.npy")
    with pytest.raises(ConfigError, match=rf"ads_demos: {wrong_dim} holds an array of shape \[2, 5, 3\]; {expected}"):
        build(wrong_dim)
    with pytest.raises(ConfigError, match=r"shape \[1, 5, 2\]"):
        build(_demo_file(tmp_path, np.zeros((1, 5, 2)), "one.npy"))
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(ConfigError, match=r"text.npy is not a readable .npy file"):
        build(str(tmp_path / "text.npy"))
    ok = _demo_file(tmp_path, np.zeros((2, 5, 2)), "ok.npy")
    with pytest.raises(ConfigError, match=r"ads_horizon: 6 is longer than the demos in .*ok.npy \(5 frames\)"):
        build(ok, ads_horizon=6)
    with pytest.raises(ConfigError, match=r"ads_progress_start: 0.1 \* horizon 5"):
        build(ok, ads_progress_start=0.1)
    assert json.loads(json.dumps(build(ok).ads.state_dict()["progress"])) == 1  # int(0.2 * 5)
