import math

import numpy as np
import pytest
import torch

import polyreward as pr


def test_construct_from_lists_tensors_and_numpy():
    from_lists = pr.RewardBatch(rewards=[[1, None], [0, 2]], names=["a", "b"], group_ids=[5, 5])
    assert from_lists.rewards.dtype == torch.float32
    assert math.isnan(from_lists.rewards[0, 1])
    from_numpy = pr.RewardBatch(rewards=np.array([[1.0, 2.0]]), names=["a", "b"])
    assert from_numpy.rewards.dtype == torch.float64
    assert from_numpy.weights.tolist() == [1.0, 1.0] and from_numpy.group_ids.tolist() == [0]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rewards": [1.0, 2.0], "names": ["a"]}, ValueError, r"rewards: expected shape \[N, K\].*1-D"),
        ({"rewards": [[1.0, 2.0]], "names": ["a"]}, ValueError, r"names: expected K=2 names"),
        ({"rewards": [[1.0, 2.0]], "names": ["a", "a"]}, ValueError, r"duplicate name 'a' at positions 0 and 1"),
        ({"rewards": [[1.0, 2.0]], "names": "ab"}, TypeError, r"names: expected a sequence"),
        ({"rewards": [[1.0], [2.0]], "names": ["a"], "group_ids": [0]}, ValueError, r"group_ids: expected shape \[2\]"),
        ({"rewards": [[1.0]], "names": ["a"], "group_ids": [0.5]}, TypeError, r"group_ids: expected integers"),
        ({"rewards": [[1.0, 2.0]], "names": ["a", "b"], "weights": [1.0]}, ValueError, r"weights: expected shape \[2\]"),
        ({"rewards": [[1.0]], "names": ["a"], "weights": [math.inf]}, ValueError, r"weights: expected finite"),
        ({"rewards": [[1.0, math.inf]], "names": ["a", "b"]}, ValueError, r"reward 'b' is infinite at row 0"),
        ({"rewards": [["x"]], "names": ["a"]}, TypeError, r"rewards: expected numbers"),
        ({"rewards": [[True]], "names": ["a"]}, TypeError, r"rewards: expected a float or integer tensor"),
        ({"rewards": torch.zeros(0, 2), "names": ["a", "b"]}, ValueError, r"at least one sample"),
        ({"rewards": [[1.0]], "names": ["a"], "budgets": [1, 2]}, ValueError, r"budgets: expected shape \[1\]"),
        ({"rewards": [[1.0]], "names": ["a"], "turn_rewards": [1.0]}, ValueError, r"turn_rewards: expected shape"),
        ({"rewards": [[1.0]], "names": ["a"], "terminated": [[False]]}, ValueError, r"give both"),
        ({"rewards": [[1.0]], "names": ["a"], "response_mask": [1, 1]}, ValueError, r"response_mask: expected shape"),
    ],
)
def test_bad_input_names_the_field(kwargs, error, message):
    with pytest.raises(error, match=message):
        pr.RewardBatch(**kwargs)


def test_group_index_is_dense_in_order_of_first_appearance():
    batch = pr.RewardBatch(rewards=[[0.0]] * 5, names=["a"], group_ids=[9, 2, 9, 40, 2])
    assert batch.group_index.tolist() == [0, 1, 0, 2, 1]
    assert batch.num_groups == 3


def test_select_add_reweight_and_lookup():
    batch = pr.RewardBatch(rewards=[[1, 2, 3], [4, 5, 6]], names=["a", "b", "c"], weights=[1, 2, 3])
    picked = batch.select("c", "a")
    assert picked.names == ("c", "a") and picked.rewards.tolist() == [[3, 1], [6, 4]]
    assert picked.weights.tolist() == [3, 1]
    grown = batch.with_reward("d", [None, 7], weight=0.5)
    assert grown.names[-1] == "d" and math.isnan(grown["d"][0]) and grown.weights[-1] == 0.5
    assert batch.with_weights(b=0.0).weights.tolist() == [1, 0, 3]
    assert batch["b"].tolist() == [2, 5]
    with pytest.raises(KeyError, match=r"unknown reward 'z'; this batch has \['a', 'b', 'c'\]"):
        batch.select("z")
    with pytest.raises(ValueError, match=r"rewards\['e'\]: expected shape \[2\]"):
        batch.with_reward("e", [1.0])


def test_weighted_sum_treats_nan_as_zero():
    batch = pr.RewardBatch(rewards=[[1, None], [2, 3]], names=["a", "b"], weights=[2, 10])
    assert batch.weighted_sum().tolist() == [2.0, 34.0]


def test_from_reward_lists_trl_layout():
    batch = pr.RewardBatch.from_reward_lists(
        [[1, 0, 1, 1], [None, 1, 0, 0]], names=["correct", "format"], group_size=2, weights=[1.0, 0.5]
    )
    assert batch.rewards.shape == (4, 2) and batch.group_index.tolist() == [0, 0, 1, 1]
    assert math.isnan(batch.rewards[0, 1])
    with pytest.raises(ValueError, match="reward lists differ in length"):
        pr.RewardBatch.from_reward_lists([[1, 0], [1]], names=["a", "b"])
    with pytest.raises(ValueError, match="not a multiple of group_size=3"):
        pr.RewardBatch.from_reward_lists([[1, 0]], names=["a"], group_size=3)


def test_condition_pays_easy_reward_only_when_gate_holds():
    batch = pr.RewardBatch(rewards=[[1, 0.8], [0, 0.9], [None, 0.5], [1, None]], names=["correct", "length"])
    conditioned = batch.condition("length", on="correct")
    torch.testing.assert_close(conditioned["length"], torch.tensor([0.8, 0.0, 0.0, math.nan]), equal_nan=True)
    torch.testing.assert_close(conditioned["correct"], batch["correct"], equal_nan=True)  # the gate is untouched


def test_turn_rewards_padding_and_mask():
    batch = pr.RewardBatch(rewards=[[0.0], [0.0]], names=["a"], turn_rewards=[[1, 2], [3, None]])
    assert batch.turn_mask.tolist() == [[True, True], [True, False]]
    assert batch.turn_rewards.tolist() == [[1, 2], [3, 0]]


def test_from_steps_is_time_major():
    rewards = torch.arange(12.0).reshape(3, 2, 2)  # T=3, E=2, K=2
    batch = pr.RewardBatch.from_steps(rewards, ["x", "y"], terminated=torch.zeros(3, 2), truncated=torch.zeros(3, 2))
    assert batch.step_shape == (3, 2) and batch.rewards[3].tolist() == [6.0, 7.0]


def test_to_moves_tensors_and_keeps_values():
    batch = pr.RewardBatch(rewards=[[1.0]], names=["a"], budgets=[512])
    moved = batch.to("cpu")
    assert moved.budgets.tolist() == [512.0] and moved.names == ("a",)
