"""Evaluation: per-objective returns, Pareto filtering and the exact 2-D hypervolume, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from polyreward.gym import GymConfig, evaluate, hypervolume_2d, pareto_front, weight_sweep

pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered:UserWarning")

# Deep Sea Treasure's true Pareto front (treasure, time), MO-Gymnasium 1.3.
DST_FRONT = [
    (0.7, -1),
    (8.2, -3),
    (11.5, -5),
    (14, -7),
    (15.1, -8),
    (16.1, -9),
    (19.6, -13),
    (20.3, -14),
    (22.4, -17),
    (23.7, -19),
]


def test_hypervolume_of_a_staircase():
    # boxes [0,1]x[0,3], [0,2]x[0,2], [0,3]x[0,1]: strips 3*1 + 2*1 + 1*1
    assert hypervolume_2d([(1, 3), (2, 2), (3, 1)], ref=(0, 0)) == pytest.approx(6.0)
    # dominated and duplicate points add nothing; order does not matter
    assert hypervolume_2d([(1, 1), (3, 1), (2, 2), (1, 3), (2, 2)], ref=(0, 0)) == pytest.approx(6.0)
    # a point that does not strictly dominate the reference point adds nothing
    assert hypervolume_2d([(2, 2), (5, 0), (0, 9)], ref=(0, 0)) == pytest.approx(4.0)
    assert hypervolume_2d([(3, 4)], ref=(1, 1)) == pytest.approx(6.0)
    assert hypervolume_2d([], ref=(0, 0)) == 0.0


def test_hypervolume_of_the_deep_sea_treasure_front():
    # reference (0, -25); sorted by treasure, descending, each strip is treasure * (time gain):
    # 23.7*6 + 22.4*2 + 20.3*3 + 19.6*1 + 16.1*4 + 15.1*1 + 14*1 + 11.5*2 + 8.2*2 + 0.7*2 = 401.8
    assert hypervolume_2d(DST_FRONT, ref=(0, -25)) == pytest.approx(401.8)
    assert hypervolume_2d([*DST_FRONT, (5, -5), (0.7, -2)], ref=(0, -25)) == pytest.approx(401.8)


def test_pareto_front_keeps_non_dominated_points_in_order():
    points = [(1, 3), (2, 2), (1, 1), (3, 1), (2, 2), (0, 3), (3, 0.5)]
    # (1,1) is dominated by (2,2); the second (2,2) is a duplicate; (0,3) by (1,3); (3,0.5) by (3,1)
    assert pareto_front(points).tolist() == [0, 1, 3]
    assert pareto_front(DST_FRONT).tolist() == list(range(10))
    assert pareto_front([(1, 2, 3), (1, 2, 2), (0, 5, 0)]).tolist() == [0, 2]


def test_evaluate_returns_per_objective_episode_returns():
    config = GymConfig(env_id="deep-sea-treasure-v0")
    down = evaluate(lambda obs: np.ones(len(obs), dtype=np.int64), config, episodes=5)
    assert down.names == ["treasure", "time"] and down.returns.shape == (5, 2)
    np.testing.assert_allclose(down.returns, [[0.7, -1.0]] * 5, rtol=1e-6)
    assert down.mean == pytest.approx({"treasure": 0.7, "time": -1.0})
    assert down.weighted({"time": 0.5}) == pytest.approx(0.2)
    assert down.lengths.tolist() == [1] * 5
    # right from the start, then down twice: the 8.2 treasure (3 steps); the 3 envs move in lockstep
    plan = iter([3, 1, 1])
    right_down = evaluate(lambda obs: np.full(len(obs), next(plan)), config, episodes=3)
    np.testing.assert_allclose(right_down.returns, [[8.2, -3.0]] * 3, rtol=1e-6)


def test_weight_sweep_gives_one_point_per_weight_vector(tmp_path):
    config = GymConfig(output_dir=str(tmp_path), num_envs=2, num_steps=16, minibatches=2, tensorboard=False)
    result = weight_sweep(config, [[1.0, 0.0], [0.0, 1.0]], total_steps=64, episodes=2, ref=(0, -101))
    assert result.names == ["treasure", "time"] and result.returns.shape == (2, 2)
    assert set(result.front.tolist()) <= {0, 1} and len(result.front) >= 1
    assert result.hypervolume == pytest.approx(hypervolume_2d(result.returns[result.front], (0, -101)))
    assert (tmp_path / "w0" / "metrics.jsonl").is_file() and (tmp_path / "w1" / "metrics.jsonl").is_file()
