import json

import pytest

from polyreward.rewards import RewardComponent, RewardSet
from polyreward.rewards.reasoning_gym import entry_for, reasoning_gym_reward, reasoning_gym_task


@pytest.fixture(scope="module")
def countdown():
    return reasoning_gym_task("countdown", size=2, seed=42)


def _ask(row, answer):
    return f"<think>...</think><answer>{answer}</answer>"


def test_task_rows_carry_question_answer_metadata_and_source(countdown):
    row = countdown[0]
    assert set(row) == {"prompt", "question", "answer", "metadata", "rg_source"}
    assert row["prompt"][0]["role"] == "system" and "<answer>" in row["prompt"][0]["content"]
    assert row["prompt"][1] == {"role": "user", "content": row["question"]}
    metadata = json.loads(row["metadata"])
    assert metadata["source_dataset"] == "countdown" and metadata["expression"] == row["answer"]
    assert json.loads(row["rg_source"]) == {"dataset": "countdown", "size": 2, "seed": 42, "config": {}, "index": 0}
    bare = reasoning_gym_task("countdown", size=1, seed=42, system_prompt=None)
    assert bare[0]["prompt"] == row["question"]


def test_countdown_scores_come_from_the_dataset(countdown):
    row = countdown[0]
    reward = reasoning_gym_reward()
    completions = [_ask(row, row["answer"]), _ask(row, "1 + 2"), "I give up"]
    n = len(completions)
    scores = reward([row["prompt"]] * n, completions, rg_source=[row["rg_source"]] * n, question=[row["question"]] * n)
    assert scores == [1.0, 0.05, 0.01]  # correct, wrong expression, no answer (countdown's own scores)


def test_sudoku_with_one_wrong_cell_gets_partial_credit():
    reward = reasoning_gym_reward()
    for name, cells in (("mini_sudoku", 16), ("sudoku", 81)):
        row = reasoning_gym_task(name, size=1, seed=3)[0]
        solution = row["answer"]
        first = solution[0]
        wrong = ("1" if first != "1" else "2") + solution[1:]  # one wrong cell, same length
        scores = reward(None, [_ask(row, solution), _ask(row, wrong)], rg_source=[row["rg_source"]] * 2)
        assert scores[0] == 1.0
        assert scores[1] == pytest.approx((cells - 1) / cells * 0.9)  # matching cells, x0.9 off the exact format


def test_reward_rebuilds_entries_in_a_worker_process(countdown):
    rows = countdown
    completions = [_ask(rows[0], rows[0]["answer"]), _ask(rows[1], "1"), _ask(rows[1], rows[1]["answer"]), "x"]
    sources = [rows[0]["rg_source"], rows[1]["rg_source"], rows[1]["rg_source"], None]
    with RewardSet([RewardComponent(reasoning_gym_reward(), executor="process")], workers=1) as rs:
        values = rs.score(["p"] * 4, completions, rg_source=sources).batch["reasoning_gym"].tolist()
    assert values[:3] == pytest.approx([1.0, 0.05, 1.0])  # the batch is float32
    assert values[3] != values[3]  # None -> NaN: not applicable


def test_errors_name_the_sample_and_column(countdown):
    reward = reasoning_gym_reward()
    row = countdown[0]
    with pytest.raises(KeyError, match="needs the dataset column 'rg_source'"):
        reward(None, ["x"], answer=["1"])
    with pytest.raises(ValueError, match="sample 0, column 'rg_source': expected rg_source JSON text, got dict"):
        reward(None, ["x"], rg_source=[{"dataset": "countdown"}])
    with pytest.raises(ValueError, match="sample 0, column 'rg_source': cannot rebuild the entry: rg_source lacks"):
        reward(None, ["x"], rg_source=['{"dataset": "countdown"}'])
    with pytest.raises(ValueError, match="sample 1, column 'rg_source': the rebuilt entry's question differs"):
        reward(None, ["x", "y"], rg_source=[row["rg_source"]] * 2, question=[row["question"], "another question"])
    with pytest.raises(ValueError, match="config must be JSON-serializable"):
        reasoning_gym_task("countdown", size=1, seed=0, min_numbers={3})


def test_entry_for_returns_the_original_entry(countdown):
    entry = entry_for(countdown[1]["rg_source"])
    assert entry["question"] == countdown[1]["question"] and entry["answer"] == countdown[1]["answer"]
    assert isinstance(entry["metadata"]["difficulty"]["numbers"], tuple)  # types survive: rebuilt, not JSON-decoded
