"""Vision-R1 criterion-driven reward: hand-computed GIoU, matching, refinement and the stage switch."""

import json
import types

import pytest

from polyreward.rewards import RewardSet
from polyreward.rewards._columns import RewardInputError
from polyreward.rewards.catalog import build_rewards
from polyreward.rewards.vision_r1 import (
    Refinement,
    dual_format,
    generalized_iou,
    match_boxes,
    parse_detections,
    precision_score,
    recall_score,
    refine,
    vision_r1_reward,
)


def _objects(*items):
    return json.dumps([{"bbox_2d": box, "label": label} for box, label in items])


# two predictions: GIoU 0.6 with the cat (same x-range, 6/10 of its height) and 90/110 with the dog
PRED = _objects(([0, 0, 10, 10], "cat"), ([20, 20, 30, 30], "dog"))
GT = [["dog", [21, 20, 31, 30]], ["cat", [0, 0, 10, 6]]]
DOG = 90 / 110


def test_refine_by_hand():
    assert refine([0.3, 0.5, 0.6, 0.75, 0.8], 0.5, 0.75).tolist() == [0.0, 0.5, 0.6, 0.75, 1.0]
    assert refine([0.4, 0.5, 0.6], 0.5, 0.5).tolist() == [0.0, 0.5, 1.0]
    assert refine([-0.2, 0.3], 0.0, 1.0).tolist() == [0.0, 0.3]


def test_generalized_iou_by_hand():
    g = generalized_iou([[0, 0, 2, 2], [0, 0, 1, 1]], [[1, 1, 3, 3], [2, 0, 3, 1], [0, 0, 2, 2]])
    # IoU 1/7, hull 9, union 7 -> 1/7 - 2/9; identical: 1; disjoint: 0 - (3 - 2) / 3; inside: 1/4
    assert g[0, 0].item() == pytest.approx(1 / 7 - 2 / 9)
    assert g[0, 2].item() == pytest.approx(1.0)
    assert g[1, 1].item() == pytest.approx(-1 / 3)
    assert g[1, 2].item() == pytest.approx(0.25)


def test_matching_pairs_boxes_one_to_one():
    rows, cols, giou = match_boxes([[0, 0, 10, 10], [20, 20, 30, 30]], ["cat", "dog"], [g[1] for g in GT], ["dog", "cat"])
    assert list(zip(rows, cols, strict=True)) == [(0, 1), (1, 0)]
    assert giou.tolist() == pytest.approx([0.6, DOG])


def test_precision_and_recall_by_stage():
    r = Refinement()
    giou = [0.6, DOG]
    # stage 0: band (0.5, 0.75) -> [0.6, 1], mean 0.8; stage 1: band (0.75, 0.9) -> [0, 0.818], mean 0.409
    assert precision_score(giou, 2, 2, r.rules(0)) == pytest.approx(0.8)
    assert precision_score(giou, 2, 2, r.rules(1)) == pytest.approx(DOG / 2)
    assert precision_score(giou, 2, 3, r.rules(0), "predictions") == pytest.approx(1.6 / 3)
    assert precision_score([-0.2, 0.6], 2, 2, r.rules(None)) == pytest.approx(0.3)  # non-adaptive: clip at 0
    # recall: stage 0 counts GIoU > 0.5 (2 of 2 -> 1); stage 1 counts > 0.75 (1 of 2 = 0.5, kept by the band)
    assert recall_score(giou, 2, 2, r.rules(0)) == 1.0
    assert recall_score(giou, 2, 2, r.rules(1)) == 0.5
    # three objects: 2/3 stays 2/3 in the band; 1/3 falls below 0.5 -> 0; non-adaptive 2/3
    assert recall_score(giou, 3, 2, r.rules(0)) == pytest.approx(2 / 3)
    assert recall_score(giou, 3, 2, r.rules(1)) == 0.0
    assert recall_score(giou, 3, 2, r.rules(None)) == pytest.approx(2 / 3)
    assert recall_score([0.8] * 3, 4, 3, r.rules(0)) == 0.75  # 3/4 is not above high = 0.75: kept
    assert recall_score([0.8] * 4, 5, 4, r.rules(0)) == 1.0  # 4/5 > 0.75 -> 1
    # no predictions: 1 only for an image without objects; predictions on an empty image: 0
    assert recall_score([], 2, 0, r.rules(0)) == 0.0 and precision_score([], 0, 0, r.rules(0)) == 1.0
    assert recall_score([], 0, 1, r.rules(0)) == 0.0 and precision_score([], 0, 1, r.rules(0)) == 0.0


def test_stage_switch_at_the_configured_step():
    precision = vision_r1_reward("precision")
    recall = vision_r1_reward("recall", switch_step=10)
    columns = {"solution": [json.dumps(GT)] * 2, "num_instances": [2, 2]}
    assert precision(["p"] * 2, [PRED] * 2, step=[1499, 1500], **columns) == pytest.approx([0.8, DOG / 2])
    assert recall(["p"] * 2, [PRED] * 2, step=9, **columns) == [1.0, 1.0]
    assert recall(["p"] * 2, [PRED] * 2, step=10, **columns) == [0.5, 0.5]
    state = types.SimpleNamespace(global_step=1500)  # TRL passes trainer_state
    assert precision(["p"], [PRED], trainer_state=state, solution=[GT], num_instances=[2]) == pytest.approx([DOG / 2])
    assert vision_r1_reward("precision", stage=1)(["p"], [PRED], solution=[GT], num_instances=[2]) == pytest.approx(
        [DOG / 2]
    )
    fixed = vision_r1_reward("precision", adaptive=False, num_instances_column=None)
    assert fixed(["p"], [PRED], solution=[GT]) == pytest.approx([(0.6 + DOG) / 2])


def test_missing_step_is_an_error_that_says_what_to_do():
    with pytest.raises(RewardInputError, match=r"'vision_r1_recall'.*needs the training step.*params.stage"):
        vision_r1_reward("recall")(["p"], [PRED], solution=[GT], num_instances=[2])


def test_dual_format_by_hand():
    assert dual_format(PRED, 2) == 1.0
    assert dual_format("```json\n" + PRED + "\n```", 2) == 1.0
    assert dual_format("there is a cat", 2) == 0.0
    assert dual_format('[{"bbox_2d": [1, 2, 3], "label": "cat"}]', 2) == 0.0
    assert dual_format("[]", 0) == 0.0 and dual_format("there is nothing", 0) == 1.0


def test_parsing_malformed_predictions():
    assert parse_detections(PRED) == [([0.0, 0.0, 10.0, 10.0], "cat"), ([20.0, 20.0, 30.0, 30.0], "dog")]
    assert parse_detections('I see {"bbox_2d": [0, 0, 10, 10], "label": "cat"} here') == [([0, 0, 10, 10], "cat")]
    assert parse_detections("[]") == []
    assert parse_detections('[{"bbox_2d": [5, 5, 1, 1], "label": "cat"}]') is None  # inverted box dropped
    assert parse_detections("[{bbox_2d: oops") is None
    reward = vision_r1_reward("precision", stage=0)
    assert reward(["p"] * 2, ["[{bbox_2d: oops", "[]"], solution=[GT, GT], num_instances=[2, 2]) == [0.0, 0.0]


def test_malformed_ground_truth_names_the_sample():
    reward = vision_r1_reward("recall", stage=0)
    with pytest.raises(RewardInputError, match=r"reward 'vision_r1_recall': sample 1, column 'solution'"):
        reward(["p"] * 2, [PRED] * 2, solution=[GT, '[["cat", [1, 2, 3]]]'], num_instances=[2, 1])
    with pytest.raises(RewardInputError, match=r"sample 0, column 'solution'"):
        reward(["p"], [PRED], solution=["not json"], num_instances=[1])
    with pytest.raises(RewardInputError, match=r"sample 0, column 'num_instances'"):
        reward(["p"], [PRED], solution=[GT], num_instances=[-1])
    assert reward(["p"], [PRED], solution=[None], num_instances=[None]) == [None]


def test_catalog_builds_each_part_and_stages_switch_by_weight():
    specs = [
        {"kind": "vision_r1", "name": "precision_s0", "params": {"part": "precision", "stage": 0},
         "weight": {"step": {"boundaries": [1500], "values": [1.0, 0.0]}}},
        {"kind": "vision_r1", "name": "precision_s1", "params": {"part": "precision", "stage": 1},
         "weight": {"step": {"boundaries": [1500], "values": [0.0, 1.0]}}},
        {"kind": "vision_r1", "params": {"part": "format"}},
    ]  # fmt: skip
    rewards = RewardSet(build_rewards(specs))
    assert rewards.names == ["precision_s0", "precision_s1", "vision_r1_format"]
    assert rewards.weights(1499) == [1.0, 0.0, 1.0] and rewards.weights(1500) == [0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match=r"rewards\[0\] \(vision_r1\): part:"):
        build_rewards([{"kind": "vision_r1", "params": {"part": "iou"}}])
    with pytest.raises(ValueError, match=r"precision_bands:"):
        build_rewards([{"kind": "vision_r1", "params": {"precision_bands": [[0.8, 0.5], [0.75, 0.9]]}}])


def test_reward_set_passes_the_training_step():
    rewards = RewardSet([vision_r1_reward("precision")])
    columns = {"solution": [json.dumps(GT)], "num_instances": [2]}
    before = rewards.score(["p"], [PRED], step=1499, **columns).batch.rewards[0, 0].item()
    after = rewards.score(["p"], [PRED], step=1500, **columns).batch.rewards[0, 0].item()
    assert before == pytest.approx(0.8) and after == pytest.approx(DOG / 2)
