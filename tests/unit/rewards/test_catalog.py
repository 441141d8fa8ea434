import pytest

from polyreward.lm.config import TrainConfig
from polyreward.lm.tasks import build_task
from polyreward.rewards.catalog import build_rewards
from polyreward.rewards.schedules import Linear, Step


def test_specs_build_named_weighted_components():
    components = build_rewards(
        [
            {"kind": "answer", "name": "correct", "params": {"mode": "numeric"}, "weight": 2.0},
            {"kind": "format", "params": {"tags": ["think", "answer"]}, "on_error": "abstain"},
            {"kind": "toolrl", "weight": {"linear": {"start": 0.5, "end": 1.0, "steps": 10}}},
            {
                "kind": "overlong",
                "params": {"max_length": 64, "cache_length": 16},
                "weight": {"step": {"boundaries": [5], "values": [0.0, 1.0]}},
            },
        ]
    )
    assert [c.name for c in components] == ["correct", "format", "toolrl_format", "toolrl_correctness", "overlong"]
    assert components[0].weight == 2.0 and components[1].on_error == "abstain"
    assert components[2].weight == Linear(0.5, 1.0, 10) and components[3].weight == Linear(0.5, 1.0, 10)
    assert components[4].weight == Step((5,), (0.0, 1.0))
    assert components[0].fn([""], ["<answer>4.0</answer>"], answer=["4"]) == [1.0]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "answr"}, "unknown reward kind 'answr'; did you mean \\['answer'\\]"),
        ({"kind": "answer", "wieght": 1}, "rewards\\[0\\]: unknown keys \\['wieght'\\]"),
        ({"kind": "answer", "params": {"mode": "fuzzy"}}, "rewards\\[0\\] \\(answer\\): answer_reward: mode='fuzzy'"),
        ({"kind": "answer", "params": {"colour": 1}}, "rewards\\[0\\] \\(answer\\): .*colour"),
        ({"kind": "answer", "weight": {"cosine": {}}}, "rewards\\[0\\].weight: expected a number"),
        ({"kind": "answer", "weight": {"linear": {"start": 1}}}, "rewards\\[0\\].weight:"),
        ("answer", "expected a mapping with a 'kind'"),
    ],
)
def test_bad_specs_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        build_rewards([spec])


def test_tasks_give_rows_and_rewards(tmp_path):
    data, rewards = build_task(TrainConfig(task="arithmetic", task_size=20))
    assert rewards.names == ["correct", "answer_format", "brevity"] and len(data) == 20
    data, rewards = build_task(TrainConfig(task="reasoning_gym:countdown", task_size=3))
    assert rewards.names == ["reasoning_gym", "format"] and len(data) == 3
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"prompt": "2+2?", "answer": "4"}\n')
    with pytest.raises(ValueError, match="a file task needs rewards"):
        build_task(TrainConfig(task=str(path)))
    data, rewards = build_task(TrainConfig(task=str(path), rewards=[{"kind": "answer"}]))
    assert rewards.names == ["answer_exact"] and data.columns == ["answer"]
    with pytest.raises(ValueError, match="expected 'arithmetic'"):
        build_task(TrainConfig(task="gsm8k"))


def test_alternating_weight_schedule_from_a_spec():
    from polyreward.rewards.schedules import Alternating

    (component,) = build_rewards([{"kind": "answer", "weight": {"alternating": {"window": 4, "first": 3}}}])
    assert component.weight == Alternating(4, 3)
    assert [component.weight_at(step) for step in range(6)] == [1.0, 1.0, 1.0, 0.0, 1.0, 1.0]
