import pytest

from polyreward.lm.data import PromptSource, load_rows


def test_order_is_a_function_of_seed_and_position():
    rows = [{"prompt": f"q{i}", "i": i} for i in range(5)]
    source = PromptSource(rows, seed=3)
    stream = [r["i"] for r in source.batch(0, 12)]
    assert sorted(stream[:5]) == list(range(5)) and sorted(stream[5:10]) == list(range(5))  # each epoch: all rows
    assert [r["i"] for r in source.batch(7, 5)] == stream[7:12]  # resuming at a position continues the stream
    assert stream != [r["i"] for r in PromptSource(rows, seed=4).batch(0, 12)]
    assert source.columns == ["i"]


def test_bad_rows_name_the_row():
    with pytest.raises(ValueError, match="prompts, row 1: no 'prompt' column"):
        PromptSource([{"prompt": "a"}, {"question": "b"}])
    with pytest.raises(ValueError, match="row 0: 'prompt' must be a non-empty string"):
        PromptSource([{"prompt": "  "}])
    with pytest.raises(ValueError, match="no rows"):
        PromptSource([])


def test_load_rows_from_jsonl_and_errors(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"prompt": "2+2?", "answer": "4"}\n{"prompt": "3+3?", "answer": "6"}\n')
    assert load_rows(path) == [{"prompt": "2+2?", "answer": "4"}, {"prompt": "3+3?", "answer": "6"}]
    with pytest.raises(ValueError, match="no 'question' column; columns are \\['prompt', 'answer'\\]"):
        load_rows(path, prompt_column="question")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_rows(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="expected one of"):
        load_rows(path.with_suffix(".txt").write_text("x") and path.with_suffix(".txt"))


def test_task_params_reach_the_generators_and_bad_ones_are_named():
    import pytest

    from polyreward.lm.config import TrainConfig
    from polyreward.lm.tasks import build_task

    easy = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}
    data, _ = build_task(TrainConfig(task="reasoning_gym:chain_sum", task_size=20, task_params=easy))
    for row in data.rows:  # "... problem: a - b =" with single digits; the answer is their value
        expression = row["question"].rsplit(":", 1)[1].strip().rstrip("=").split()
        assert len(expression) == 3 and all(len(t) == 1 for t in expression[::2])
        a, op, b = int(expression[0]), expression[1], int(expression[2])
        assert int(row["answer"]) == (a + b if op == "+" else a - b)
    data, _ = build_task(TrainConfig(task_size=50, task_params={"max_operand": 3}))
    assert max(int(row["answer"]) for row in data.rows) <= 6
    with pytest.raises(ValueError, match=r"task_params for 'reasoning_gym:chain_sum'.*nope"):
        build_task(TrainConfig(task="reasoning_gym:chain_sum", task_size=4, task_params={"nope": 1}))
    with pytest.raises(ValueError, match=r"task_params: \['x'\] are not settings of 'arithmetic'"):
        build_task(TrainConfig(task_params={"x": 1}))
