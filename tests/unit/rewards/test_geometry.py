"""Box and temporal IoU: hand-computed cases, a pixel-count check, and the Temporal-R1 spec case."""

import numpy as np
import pytest
import torch

from polyreward.rewards._columns import RewardInputError
from polyreward.rewards.geometry import (
    box_iou,
    box_iou_reward,
    parse_box,
    parse_interval,
    temporal_format,
    temporal_format_reward,
    temporal_iou,
    temporal_iou_reward,
    temporal_r1_reward,
)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 2, 2], [1, 1, 3, 3], 1 / 7),  # overlap 1, union 4 + 4 - 1
        ([0, 0, 2, 2], [0, 0, 2, 2], 1.0),
        ([0, 0, 4, 4], [1, 1, 2, 2], 1 / 16),  # containment
        ([0, 0, 1, 1], [1, 0, 2, 1], 0.0),  # touching edges
        ([0, 0, 1, 1], [5, 5, 6, 6], 0.0),
        ([1, 1, 1, 1], [1, 1, 1, 1], 0.0),  # zero-area boxes: empty union
        ([0, 0, 0, 2], [0, 0, 2, 2], 0.0),  # zero-width box
        ([2, 2, 0, 0], [0, 0, 2, 2], 0.0),  # inverted box
        ([0.5, 0, 1.5, 1], [0, 0, 1, 1], 0.5 / 1.5),
    ],
)
def test_box_iou_by_hand(a, b, expected):
    assert float(box_iou(a, b)) == pytest.approx(expected)


def test_box_iou_against_pixel_counts():
    rng = np.random.default_rng(0)
    for _ in range(100):
        a, b = np.sort(rng.integers(0, 12, size=(2, 2, 2)), axis=1)  # (x1, x2), (y1, y2) sorted per box
        boxes = [np.array([box[0, 0], box[1, 0], box[0, 1], box[1, 1]]) for box in (a, b)]
        grids = []
        for x1, y1, x2, y2 in boxes:
            grid = np.zeros((12, 12), dtype=bool)
            grid[y1:y2, x1:x2] = True
            grids.append(grid)
        union = (grids[0] | grids[1]).sum()
        expected = (grids[0] & grids[1]).sum() / union if union else 0.0
        assert float(box_iou(boxes[0], boxes[1])) == pytest.approx(expected)


def test_box_iou_broadcasts():
    boxes = torch.tensor([[0, 0, 2, 2], [1, 1, 3, 3], [5, 5, 6, 6]], dtype=torch.float64)
    out = box_iou(boxes, torch.tensor([0.0, 0, 2, 2]))
    assert out.shape == (3,)
    assert out.tolist() == pytest.approx([1.0, 1 / 7, 0.0])
    pairwise = box_iou(boxes[:, None, :], boxes[None, :, :])
    assert pairwise.shape == (3, 3)
    assert torch.allclose(pairwise, pairwise.T)
    with pytest.raises(ValueError, match="last dimension of 4"):
        box_iou([0, 0, 1], [0, 0, 1, 1])


def test_temporal_iou_spec_and_edges():
    assert float(temporal_iou([0.2, 0.5], [0.3, 0.6])) == pytest.approx(0.5)  # 0.2 / 0.4
    assert float(temporal_iou([20, 50], [30, 60])) == pytest.approx(0.5)  # scale-invariant
    assert float(temporal_iou([0, 1], [2, 3])) == 0.0
    assert float(temporal_iou([0.5, 0.2], [0.3, 0.6])) == 0.0  # inverted prediction
    assert float(temporal_iou([1, 1], [1, 1])) == 0.0  # empty hull
    assert float(temporal_iou([0, 4], [1, 2])) == pytest.approx(0.25)
    assert temporal_iou(torch.tensor([[0.0, 1.0], [0.5, 1.0]]), [0.0, 1.0]).tolist() == [1.0, 0.5]


def test_parsers():
    assert parse_box("<think>x</think><answer>box: [10, 20.5, 30, -4e1]</answer>") == [10, 20.5, 30, -40]
    assert parse_box("[1, 2, 3, 4]") is None  # no <answer>
    assert parse_box("[1, 2, 3, 4]", tag=None) == [1, 2, 3, 4]
    assert parse_interval('<answer>{"start_time": "12.5", "end_time": 20}</answer>') == [12.5, 20.0]
    assert parse_interval("<answer>[1, 2]</answer>") == [1.0, 2.0]
    assert parse_interval('<answer>{"start_time": 1}</answer>') is None
    assert parse_interval("<answer>nan</answer>") is None


def test_temporal_format():
    assert temporal_format('<think>a</think>\n<answer>{"start_time": "1.5", "end_time": "3"}</answer>') == 1.0
    assert temporal_format('<think>a</think><answer>{"start_time": 1.5, "end_time": 3}</answer>') == 1.0
    assert temporal_format('<answer>{"start_time": 1.5, "end_time": 3}</answer>') == 0.0
    assert temporal_format('<think>a</think><answer>{"end_time": 3, "start_time": 1}</answer>') == 0.0


COMPLETION = '<think>look</think><answer>{"start_time": "20", "end_time": "50"}</answer>'


def test_temporal_r1_combined_spec():
    fn = temporal_r1_reward(duration_column="duration")
    # pred [20, 50] / 100 = [0.2, 0.5] vs GT [0.3, 0.6]: tIoU 0.5, format 1 -> 0.5 * 0.5 + 0.5 * 1
    assert fn(["p"], [COMPLETION], timestamps=[[0.3, 0.6]], duration=[100]) == [pytest.approx(0.75)]
    weighted = temporal_r1_reward(duration_column="duration", iou_weight=0.9, format_weight=0.1)
    assert weighted(["p"], [COMPLETION], timestamps=[[0.3, 0.6]], duration=[100]) == [pytest.approx(0.55)]


def test_temporal_rewards_batched():
    iou = temporal_iou_reward()
    fmt = temporal_format_reward()
    assert (iou.__name__, fmt.__name__) == ("temporal_iou", "temporal_format")
    completions = [COMPLETION, "no answer", [{"role": "assistant", "content": COMPLETION}], COMPLETION]
    stamps = [[30, 60], [30, 60], np.array([20, 50]), None]
    assert iou([""] * 4, completions, timestamps=stamps) == [pytest.approx(0.5), 0.0, 1.0, None]
    assert fmt([""] * 4, completions) == [1.0, 0.0, 1.0, 1.0]
    with pytest.raises(RewardInputError, match="sample 1, column 'timestamps'"):
        iou([""] * 2, [COMPLETION] * 2, timestamps=[[0, 1], [0, 1, 2]])
    with pytest.raises(RewardInputError, match="sample 0, column 'duration'"):
        temporal_iou_reward(duration_column="duration")([""], [COMPLETION], timestamps=[[0, 1]], duration=[0])


def test_box_iou_reward_batched_and_threshold():
    completions = ["<answer>[0, 0, 2, 2]</answer>", "<answer>[1, 1, 3, 3]</answer>", "<answer>none</answer>", "x"]
    gts = [[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 2, 2], None]
    assert box_iou_reward()([""] * 4, completions, solution=gts) == [1.0, pytest.approx(1 / 7), 0.0, None]
    hit = box_iou_reward(threshold=0.5, name="box_hit")
    assert hit.__name__ == "box_hit"
    assert hit([""] * 4, completions, solution=gts) == [1.0, 0.0, 0.0, None]
    with pytest.raises(RewardInputError, match="sample 0, column 'solution'"):
        box_iou_reward()([""], ["x"], solution=["[0, 0, 1, 1]"])
    with pytest.raises(RewardInputError, match="needs the dataset column 'solution'"):
        box_iou_reward()([""], ["x"], bbox=[[0, 0, 1, 1]])
