"""polyreward inside verl 0.9.1, checked against verl's own code on CPU tensors.

Runs in .venv-verl (scripts/verl_env.sh); the main suite runs this file there through
tests/integrations/test_verl_venv.py. Compared with verl's real functions: its estimators in
``core_algos`` (grpo, grpo_vectorized, rloo, reinforce_plus_plus(_baseline), gdpo), the trainer's
``compute_advantage`` (legacy ``ray_trainer`` and v1 ``compute_advantage_for_multi_trajectories``), and
the reward loop's ``RewardLoopWorker.compute_score_batch`` / ``RewardLoopManager.compute_rm_score`` /
``extract_reward`` / ``resolve_reward_manager_cls``. Ray itself is not started (see docs/integrations/verl.md).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

verl = pytest.importorskip("verl")

from omegaconf import OmegaConf  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.experimental.reward_loop import reward_loop  # noqa: E402
from verl.trainer.ppo import core_algos, ray_trainer  # noqa: E402
from verl.trainer.ppo.reward import _call_with_kwargs, extract_reward, resolve_reward_manager_cls  # noqa: E402
from verl.trainer.ppo.v1 import utils as v1_utils  # noqa: E402

import polyreward as pr  # noqa: E402
from polyreward.integrations import verl as pv  # noqa: E402
from polyreward.rewards import RewardComponent, RewardSet  # noqa: E402

# verl's wheel installs a top-level ``tests`` package into site-packages, which shadows ours: load by path.
_spec = importlib.util.spec_from_file_location("polyreward_tiny_models", Path(__file__).parents[1] / "tiny_models.py")
_tiny_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny_models)
word_tokenizer = _tiny_models.word_tokenizer

REGISTERED = pv.register_with_verl()
EPS = 1e-6  # verl's epsilon; polyreward's group estimators default to 1e-4


def outcome_inputs(scores: torch.Tensor, uids: list[str], max_len: int = 6, seed: int = 0):
    """verl's estimator inputs: each score on the last response token, random response lengths."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (len(scores),), generator=gen)
    mask = (torch.arange(max_len)[None, :] < lengths[:, None]).float()
    rewards = torch.zeros(len(scores), max_len)
    rewards[torch.arange(len(scores)), lengths - 1] = scores.float()
    return rewards, mask, np.array(uids, dtype=object)


def interleaved_uids(groups: int, size: int, seed: int = 0) -> list[str]:
    order = torch.randperm(groups * size, generator=torch.Generator().manual_seed(seed))
    return [f"uid-{int(i) % groups}" for i in order]


def ours(name: str, **kwargs):
    return core_algos.get_adv_estimator_fn("polyreward_" + name)(**kwargs)


def sample_values(token_adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The per-sample value of an outcome advantage (it is constant over the response tokens)."""
    return (token_adv * mask).sum(-1) / mask.sum(-1)


# ------------------------------------------------------------------------------------------- registry
def test_every_sample_level_estimator_is_in_verls_registry():
    expected = {n for n in pr.advantages.names() if n not in pv.UNSUPPORTED}
    assert {r.removeprefix("polyreward_") for r in REGISTERED} == expected
    assert pv.register_with_verl() == REGISTERED  # again: same functions, verl's registry accepts them
    for name in REGISTERED:
        assert core_algos.ADV_ESTIMATOR_REGISTRY[name] is core_algos.get_adv_estimator_fn(name)
    with pytest.raises(ValueError, match="environment steps"):
        pv.register_with_verl(["gae"])
    with pytest.raises(KeyError, match="grpo"):
        pv.register_with_verl(["grpoo"])


# ------------------------------------------------------------------------------------------- estimators
@pytest.mark.parametrize("verl_fn", ["compute_grpo_outcome_advantage", "compute_grpo_vectorized_outcome_advantage"])
@pytest.mark.parametrize("norm", [True, False])
def test_grpo_equals_verls_grpo(verl_fn, norm):
    scores = torch.randn(32).round(decimals=1)
    rewards, mask, uids = outcome_inputs(scores, interleaved_uids(8, 4))
    theirs, _ = getattr(core_algos, verl_fn)(rewards, mask, uids, epsilon=EPS, norm_adv_by_std_in_grpo=norm)
    params = {"eps": EPS, "scale": "group" if norm else "none"}
    adv, returns = ours(
        "grpo", token_level_rewards=rewards, response_mask=mask, index=uids, config={"polyreward_params": params}
    )
    assert adv.shape == rewards.shape and torch.equal(adv, returns)
    assert torch.allclose(adv, theirs, atol=1e-5), (adv - theirs).abs().max()
    assert (adv[mask == 0] == 0).all()


def test_singleton_groups_differ_from_verl_as_documented():
    """verl gives a lone sample its raw score (mean 0, std 1); polyreward gives it 0 (nothing to compare)."""
    scores = torch.tensor([1.0, 0.0, 2.0, 3.0, -2.0])
    rewards, mask, uids = outcome_inputs(scores, ["a", "a", "b", "c", "c"])
    for verl_fn, name in [
        (core_algos.compute_grpo_outcome_advantage, "grpo"),
        (core_algos.compute_rloo_outcome_advantage, "rloo"),
    ]:
        theirs = sample_values(verl_fn(rewards, mask, uids, epsilon=EPS)[0], mask)
        mine = sample_values(
            ours(
                name,
                token_level_rewards=rewards,
                response_mask=mask,
                index=uids,
                config={"polyreward_params": {"eps": EPS}} if name == "grpo" else None,
            )[0],
            mask,
        )
        paired = torch.tensor([True, True, False, True, True])
        assert torch.allclose(mine[paired], theirs[paired], atol=1e-5)
        assert mine[2] == 0 and theirs[2] == pytest.approx(2.0, rel=1e-5)


def test_rloo_equals_verls_rloo():
    scores = torch.randn(30).round(decimals=1)
    rewards, mask, uids = outcome_inputs(scores, interleaved_uids(6, 5))
    theirs, _ = core_algos.compute_rloo_outcome_advantage(rewards, mask, uids)
    adv, _ = ours("rloo", token_level_rewards=rewards, response_mask=mask, index=uids)
    assert torch.allclose(adv, theirs, atol=1e-5), (adv - theirs).abs().max()


@pytest.mark.parametrize("baseline", ["none", "group"])
def test_reinforce_pp_equals_verls_token_whitened_reinforce_plus_plus(baseline):
    """verl's REINFORCE++ whitens over tokens (masked_whiten): ours with batch_norm="token"."""
    scores = torch.randn(24).round(decimals=1)
    rewards, mask, uids = outcome_inputs(scores, interleaved_uids(6, 4))
    if baseline == "none":
        theirs, _ = core_algos.compute_reinforce_plus_plus_outcome_advantage(
            rewards, mask, config=OmegaConf.create({"gamma": 1.0})
        )
    else:
        theirs, _ = core_algos.compute_reinforce_plus_plus_baseline_outcome_advantage(rewards, mask, uids)
    params = {"baseline": baseline, "batch_norm": "token"}
    adv, _ = ours(
        "reinforce_pp", token_level_rewards=rewards, response_mask=mask, index=uids, config={"polyreward_params": params}
    )
    assert torch.allclose(adv, theirs, atol=1e-5), (adv - theirs).abs().max()


def gdpo_data(k_rewards: dict[str, list[float]], uids: list[str], weights: dict[str, float], seed: int = 0) -> DataProto:
    """A DataProto as verl's legacy trainer holds it before compute_advantage: components both under verl's
    gdpo_reward_keys and under polyreward's keys (what PolyrewardRewardManager emits)."""
    n, prompt_len, resp_len = len(uids), 3, 5
    summed = sum(torch.tensor(v) * weights[k] for k, v in k_rewards.items())
    rewards, mask, index = outcome_inputs(summed, uids, resp_len, seed)
    attention = torch.cat([torch.ones(n, prompt_len), mask], dim=1).long()
    tensors = {
        "prompts": torch.ones(n, prompt_len, dtype=torch.long),
        "responses": torch.ones(n, resp_len, dtype=torch.long),
        "attention_mask": attention,
        "response_mask": mask,
        "token_level_scores": rewards,
        "token_level_rewards": rewards,
    }
    non_tensor = {"uid": index}
    for key, values in k_rewards.items():
        non_tensor[key] = np.array(values)
        non_tensor[pv.COMPONENT_KEY + key] = np.array(values)
        non_tensor[pv.WEIGHT_KEY + key] = np.full(n, weights[key])
    return DataProto.from_dict(tensors=tensors, non_tensors=non_tensor)


def random_components(n: int, seed: int = 0) -> dict[str, list[float]]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "correct": torch.randint(0, 2, (n,), generator=gen).float().tolist(),
        "format": torch.rand(n, generator=gen).round(decimals=1).tolist(),
        "brevity": torch.rand(n, generator=gen).round(decimals=2).tolist(),
    }


def test_gdpo_equals_verls_gdpo_on_the_same_components():
    weights = {"correct": 1.0, "format": 0.5, "brevity": 0.25}
    data = gdpo_data(random_components(32), interleaved_uids(8, 4), weights)
    config = {"gdpo_reward_keys": list(weights), "gdpo_reward_weights": list(weights.values())}
    theirs, _ = core_algos.compute_gdpo_outcome_advantage(
        data.batch["token_level_rewards"], data.batch["response_mask"], data.non_tensor_batch["uid"],
        epsilon=EPS, config=config, non_tensor_batch=data.non_tensor_batch, batch=data.batch,
    )  # fmt: skip
    params = {"polyreward_params": {"eps": EPS, "batch_norm": "token"}}
    adv, _ = ours(
        "gdpo", token_level_rewards=data.batch["token_level_rewards"], response_mask=data.batch["response_mask"],
        index=data.non_tensor_batch["uid"], config=params, non_tensor_batch=data.non_tensor_batch,
    )  # fmt: skip
    assert torch.allclose(adv, theirs, atol=1e-5), (adv - theirs).abs().max()
    # without the components the adapter sees one reward (the weighted sum), which gives other advantages
    k1, _ = ours("gdpo", token_level_rewards=data.batch["token_level_rewards"], response_mask=data.batch["response_mask"],
                 index=data.non_tensor_batch["uid"], config=params)  # fmt: skip
    assert (k1 - theirs).abs().max() > 0.05


def test_reward_batch_from_verl_keeps_names_nan_weights_and_groups():
    data = gdpo_data({"a": [1.0, math.nan, 0.0], "b": [0.5, 0.5, 1.0]}, ["x", "y", "x"], {"a": 2.0, "b": 1.0})
    batch = pv.reward_batch_from_verl(
        data.batch["token_level_rewards"], data.batch["response_mask"], data.non_tensor_batch["uid"], data.non_tensor_batch
    )
    assert batch.names == ("a", "b") and batch.weights.tolist() == [2.0, 1.0]
    assert batch.group_index.tolist() == [0, 1, 0] and math.isnan(batch.rewards[1, 0])
    bad = dict(data.non_tensor_batch, **{"polyreward/a": np.array([1.0, 2.0])})
    with pytest.raises(ValueError, match="polyreward/a"):
        pv.reward_batch_from_verl(data.batch["token_level_rewards"], data.batch["response_mask"], None, bad)


# ------------------------------------------------------------------------------------------- the trainer's compute_advantage
def algo_config(**extra) -> OmegaConf:
    return OmegaConf.create({"gamma": 1.0, "lam": 1.0, "use_kl_in_reward": False, **extra})


def test_trainer_compute_advantage_with_our_names_matches_verls_estimators():
    """verl's real ray_trainer.compute_advantage: polyreward_gdpo reads the components from the DataProto
    (verl passes non_tensor_batch only to 'gdpo'; register_with_verl's wrapper hands it to ours)."""
    weights = {"correct": 1.0, "format": 0.5, "brevity": 0.25}
    data = gdpo_data(random_components(24, seed=3), interleaved_uids(6, 4, seed=3), weights)
    verl_cfg = algo_config(gdpo_reward_keys=list(weights), gdpo_reward_weights=list(weights.values()))
    theirs = ray_trainer.compute_advantage(data, "gdpo", config=verl_cfg).batch["advantages"].clone()
    ours_cfg = algo_config(polyreward_params={"eps": EPS, "batch_norm": "token"})
    mine = ray_trainer.compute_advantage(data, "polyreward_gdpo", config=ours_cfg).batch
    assert torch.allclose(mine["advantages"], theirs, atol=1e-5), (mine["advantages"] - theirs).abs().max()
    assert torch.equal(mine["returns"], mine["advantages"])

    grpo = ray_trainer.compute_advantage(data, "grpo", config=algo_config()).batch["advantages"].clone()
    mine = ray_trainer.compute_advantage(
        data.select(non_tensor_batch_keys=["uid"]), "polyreward_grpo", config=algo_config(polyreward_params={"eps": EPS})
    ).batch["advantages"]
    assert torch.allclose(mine, grpo, atol=1e-5)

    with pytest.raises(ValueError, match="use_kl_in_reward"):
        ray_trainer.compute_advantage(data, "polyreward_gdpo", config=algo_config(use_kl_in_reward=True))
    with pytest.raises(TypeError, match="no parameter 'epsilon'"):
        ray_trainer.compute_advantage(data, "polyreward_gdpo", config=algo_config(polyreward_params={"epsilon": 1}))


def test_v1_trainer_data_has_no_reward_extra_info():
    """verl 0.9.1's v1 trainer (_compute_advantage) builds its DataProto with only 'uid' in non_tensor_batch:
    verl's own gdpo then fails on its reward keys, and ours fall back to K = 1 (the weighted sum)."""
    weights = {"correct": 1.0, "format": 0.5}
    data = gdpo_data(random_components(16, seed=5) | {}, interleaved_uids(4, 4, seed=5), weights | {"brevity": 0.0})
    v1_data = data.select(non_tensor_batch_keys=["uid"])
    keys = [f"{uid}_0_0" for uid in v1_data.non_tensor_batch["uid"]]
    with pytest.raises(AssertionError, match="not found in non_tensor_batch"):
        v1_utils.compute_advantage_for_multi_trajectories(
            v1_data, keys, "gdpo", config=algo_config(gdpo_reward_keys=list(weights))
        )
    mine = v1_utils.compute_advantage_for_multi_trajectories(
        v1_data, keys, "polyreward_grpo", config=algo_config(polyreward_params={"eps": EPS})
    ).batch["advantages"]
    grpo = ray_trainer.compute_advantage(v1_data, "grpo", config=algo_config()).batch["advantages"]
    assert torch.allclose(mine, grpo, atol=1e-5)


# ------------------------------------------------------------------------------------------- reward manager
WORDS = ["what", "is", "two", "plus", "two", "three", "four", "five", "answer", "maybe"]


def correct(prompts, completions, ground_truth, **_):
    return [float(c.split()[-1] == gt) for c, gt in zip(completions, ground_truth, strict=True)]


def answer_format(prompts, completions, **_):
    if any("maybe" in c for c in completions):
        raise ValueError("cannot parse 'maybe'")
    return [float(c.startswith("answer")) for c in completions]


def reward_set() -> RewardSet:
    return RewardSet([correct, RewardComponent(answer_format, weight=0.5, on_error="abstain")])


class SetRewards(pv.PolyrewardRewardManager):
    reward_set = reward_set()


def rollout(tokenizer) -> tuple[DataProto, list[str]]:
    """Two prompts x 3 responses, prompts left-padded and responses right-padded, as verl's rollout gives them."""
    prompts = ["what is two plus two", "two plus two"]
    responses = ["answer four", "answer five", "four", "answer maybe four", "three", "answer four"]
    gts = ["four", "four"]
    p = [tokenizer(prompts[i // 3])["input_ids"] for i in range(6)]
    r = [tokenizer(x)["input_ids"] + [tokenizer.eos_token_id] for x in responses]
    plen, rlen = max(map(len, p)), max(map(len, r)) + 1
    pad = tokenizer.pad_token_id
    prompt_ids = torch.tensor([[pad] * (plen - len(x)) + x for x in p])
    response_ids = torch.tensor([x + [pad] * (rlen - len(x)) for x in r])
    attention = torch.tensor(
        [[0] * (plen - len(a)) + [1] * len(a) + [1] * len(b) + [0] * (rlen - len(b)) for a, b in zip(p, r, strict=True)]
    )
    data = DataProto.from_dict(
        tensors={"prompts": prompt_ids, "responses": response_ids, "attention_mask": attention,
                 "input_ids": torch.cat([prompt_ids, response_ids], 1)},
        non_tensors={"uid": np.array([f"u{i // 3}" for i in range(6)], dtype=object),
                     "data_source": np.array(["arith"] * 6, dtype=object),
                     "reward_model": np.array([{"ground_truth": gts[i // 3]} for i in range(6)], dtype=object)},
    )  # fmt: skip
    return data, responses


def reward_loop_config() -> OmegaConf:
    return OmegaConf.create(
        {"reward": {"custom_reward_function": {"path": None}, "reward_model": {"enable": False}, "num_workers": 1},
         "trainer": {"experiment_name": "test"}}
    )  # fmt: skip


class _Handle:
    """Stands in a Ray actor handle: ``.compute_score_batch.remote(chunk)`` runs the real worker method."""

    def __init__(self, worker):
        self.compute_score_batch = self
        self.worker = worker

    def remote(self, chunk):
        return asyncio.run(self.worker.compute_score_batch(chunk))


def test_reward_manager_through_verls_reward_loop_and_compute_advantage(monkeypatch):
    tokenizer = word_tokenizer(WORDS)
    data, responses = rollout(tokenizer)
    config = reward_loop_config()
    worker = object.__new__(reward_loop.RewardLoopWorker)  # its __init__ downloads a tokenizer by path
    worker.config, worker.reward_manager = config, SetRewards(config, tokenizer, None)
    manager = object.__new__(reward_loop.RewardLoopManager)  # its __init__ starts Ray actors
    manager.config, manager.reward_model_manager = config, None
    manager.reward_loop_workers, manager.reward_manager_cls = [_Handle(worker)], SetRewards
    monkeypatch.setattr(reward_loop.ray, "get", lambda results: results)
    scored_by_verl = manager.compute_rm_score(data)  # verl's real aggregation: rm_scores + reward_extra_keys

    expected = reward_set().score(["?"] * 6, responses, ground_truth=["four"] * 6, group_size=3)
    assert [f.sample for f in expected.failures] == [3]  # 'maybe' abstains: NaN, not 0
    reward_tensor, extra = extract_reward(data.union(scored_by_verl))
    last = data.batch["attention_mask"][:, data.batch["prompts"].shape[1] :].sum(-1) - 1
    weighted = torch.nan_to_num(expected.batch.weighted_sum(), nan=0.0)
    assert torch.allclose(reward_tensor[torch.arange(6), last], weighted)
    assert reward_tensor.sum() == pytest.approx(float(weighted.sum()))
    assert set(extra) == {
        "polyreward/correct",
        "polyreward/answer_format",
        "polyreward_weight/correct",
        "polyreward_weight/answer_format",
    }
    np.testing.assert_array_equal(extra["polyreward/correct"], expected.batch.rewards[:, 0].numpy())
    assert math.isnan(extra["polyreward/answer_format"][3]) and extra["polyreward_weight/answer_format"][0] == 0.5

    # what the legacy trainer's fit does next (ray_trainer.py, RayPPOTrainer.fit), then its compute_advantage
    batch = data.union(scored_by_verl)
    batch.batch["token_level_scores"] = batch.batch["token_level_rewards"] = reward_tensor
    batch.non_tensor_batch.update({k: np.array(v) for k, v in extra.items()})
    out = ray_trainer.compute_advantage(batch, "polyreward_gdpo", config=algo_config()).batch
    want = pr.advantages.compute("gdpo", expected.batch).advantages
    assert torch.allclose(sample_values(out["advantages"], out["response_mask"]), want.float(), atol=1e-6)

    # the whole-batch call (verl's batch-manager interface) gives the same tensor and info
    direct = SetRewards(config, tokenizer, None)(data, return_dict=True)
    assert torch.equal(direct["reward_tensor"], reward_tensor)
    np.testing.assert_array_equal(direct["reward_extra_info"]["polyreward/correct"], extra["polyreward/correct"])


def test_reward_manager_is_found_the_ways_verl_looks_it_up(tmp_path):
    tokenizer = word_tokenizer(WORDS)
    data, _ = rollout(tokenizer)
    registered = resolve_reward_manager_cls(
        OmegaConf.create({"reward": {"reward_manager": {"source": "register", "name": "polyreward"}}})
    )
    assert registered is pv.PolyrewardRewardManager
    # registered name: the RewardSet is verl's custom reward function (verl wraps it in a partial)
    manager = registered(reward_loop_config(), tokenizer, functools.partial(_call_with_kwargs, reward_set(), {}))
    assert torch.equal(manager(data), SetRewards(reward_loop_config(), tokenizer, None)(data))
    with pytest.raises(TypeError, match="no RewardSet"):
        registered(reward_loop_config(), tokenizer, lambda **kw: 0.0)

    module = tmp_path / "my_rewards.py"
    module.write_text(
        "from polyreward.integrations.verl import PolyrewardRewardManager, register_with_verl\n"
        "from polyreward.rewards import RewardSet\n"
        "register_with_verl(['grpo'], prefix='mine_')\n"
        "def always(prompts, completions, **kw):\n"
        "    return [1.0] * len(completions)\n"
        "class MyRewards(PolyrewardRewardManager):\n"
        "    reward_set = RewardSet([always])\n"
    )
    cfg = {"reward": {"reward_manager": {"source": "importlib", "name": "MyRewards", "module": {"path": str(module)}}}}
    cls = resolve_reward_manager_cls(OmegaConf.create(cfg))  # what RewardLoopManager does in the trainer process
    assert issubclass(cls, pv.PolyrewardRewardManager) and "mine_grpo" in core_algos.ADV_ESTIMATOR_REGISTRY
