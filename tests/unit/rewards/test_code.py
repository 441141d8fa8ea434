"""Code rewards in the sandbox: tests passed (partial credit by hand) and generated reward code."""

from __future__ import annotations

import math
import pickle

import pytest

from polyreward.rewards import RewardComponent, RewardError, RewardSet
from polyreward.rewards import code as code_rewards
from polyreward.rewards.code import (
    GeneratedRewardError,
    code_test_reward,
    extract_program,
    generated_reward,
    normalize_output,
)

DOUBLE = "```python\nn = int(input())\nprint(n * 2)\n```"
ADD = "Here is the function:\n```python\ndef add(a, b):\n    return a + b\n```\nIt adds."


# ---------------------------------------------------------------------------------------------- extraction
@pytest.mark.parametrize(
    ("text", "program"),
    [
        ("```python\nprint(1)\n```\ntext\n```py\nprint(2)\n```", "print(2)\n"),  # the last python block
        ("```\nprint(3)\n```", "print(3)\n"),  # an untagged block
        ("```bash\nls\n```\n```\nprint(4)\n```", "print(4)\n"),  # python or untagged only
        ("text\n```python\nprint(5)\n", "print(5)\n"),  # cut off before the closing fence
        ("print(6)", "print(6)"),  # no fence: the whole text
    ],
)
def test_extract_program(text, program):
    assert extract_program(text) == program


def test_normalize_output_ignores_trailing_whitespace_only():
    assert normalize_output("1 2 \r\n3\n\n\n") == "1 2\n3"
    assert normalize_output(" 1\n\n2") == " 1\n\n2"


# ---------------------------------------------------------------------------------------------- test reward
def test_stdin_stdout_tests_give_partial_credit():
    reward = code_test_reward(timeout_s=2.0)
    tests = [[("2", "4"), ("5", "10\n"), ("0", "1")], [("3", "6  \n\n")], None, []]
    scores = reward(["p"] * 4, [DOUBLE, DOUBLE, DOUBLE, DOUBLE], tests=tests)
    assert scores == [2 / 3, 1.0, None, None]  # 2 of 3; trailing whitespace ignored; no tests: not applicable
    assert reward.__name__ == "code_tests"


def test_assert_tests_run_after_the_program_and_count_separately():
    reward = code_test_reward()
    chat = [{"role": "user", "content": "write add"}, {"role": "assistant", "content": ADD}]
    tests = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 5"]
    assert reward(["p"], [chat], tests=[tests]) == [2 / 3]


def test_exiting_early_does_not_pass_assert_tests():
    hacks = ["```python\nimport sys\nsys.exit(0)\n```", "```python\nimport os\nos._exit(0)\n```",
             "```python\ndef add(a, b):\n    return a + b\nprint('all tests passed')\n```"]  # fmt: skip
    reward = code_test_reward()
    assert reward(["p"] * 3, hacks, tests=[["assert add(1, 1) == 3"]] * 3) == [0.0, 0.0, 0.0]


def test_a_test_that_times_out_fails_alone():
    program = "n = int(input())\nwhile n == 7:\n    pass\nprint(n)"
    reward = code_test_reward(timeout_s=0.5)
    assert reward(["p"], [program], tests=[[("1", "1"), ("7", "7"), ("8", "8"), ("9", "0")]]) == [2 / 4]


def test_crashing_and_memory_hungry_programs_fail_their_tests():
    reward = code_test_reward(memory_mb=128)
    programs = ["raise SystemExit(1)", "x = bytearray(1 << 30)\nprint(4)", "print(4)"]
    assert reward(["p"] * 3, programs, tests=[[("", "4")]] * 3) == [0.0, 0.0, 1.0]


def test_malformed_tests_name_the_sample():
    reward = code_test_reward()
    with pytest.raises(ValueError, match=r"sample 1: a test must be a \(stdin, expected_stdout\) pair"):
        reward(["p"] * 2, [DOUBLE, DOUBLE], tests=[[("1", "2")], [("1", "2", "3")]])
    with pytest.raises(ValueError, match="sample 0: tests must be a list"):
        reward(["p"], [DOUBLE], tests=["assert True"])
    with pytest.raises(KeyError, match="needs the dataset column 'tests'"):
        reward(["p"], [DOUBLE], answers=[1])


def test_code_rewards_pickle_for_process_workers():
    reward = code_test_reward(name="unit_tests")
    assert pickle.loads(pickle.dumps(reward)) == reward
    assert RewardComponent(reward, executor="process").name == "unit_tests"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout_s": 0}, "timeout_s"),
        ({"workers": 0}, "workers"),
        ({"memory_mb": 2.5}, "memory_mb"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_settings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        code_test_reward(**kwargs)


# ---------------------------------------------------------------------------------------------- generated rewards
LENGTH_CODE = "def reward(sample):\n    return len(sample['completion']) / 10"
MATCH_CODE = "```python\ndef reward(sample):\n    print('debug output is ignored')\n    return sample['completion'].strip() == sample['answer']\n```"  # noqa: E501


def test_generated_reward_from_a_column_scores_the_completion():
    reward = generated_reward(columns=["answer"])
    codes = [LENGTH_CODE, "def reward(sample):\n    return sample['completion'].strip() == sample['answer']", None, ""]
    scores = reward(["p"] * 4, ["abcde", " 42 ", "x", "y"], reward_code=codes, answer=["", "42", "", ""])
    assert scores == [0.5, 1.0, None, None]
    assert reward.__name__ == "generated_reward"


def test_generated_reward_sees_prompt_completion_and_columns_as_json():
    code = "def reward(sample):\n    return len(sample) + sample['weights'][1] + len(sample['prompt'])"
    reward = generated_reward(columns=["weights"])
    assert reward(["abc"], ["c"], reward_code=[code], weights=[[0.5, 0.25]]) == [3 + 0.25 + 3]


def test_generated_reward_from_the_completion_scores_an_observation():
    code = "```python\ndef reward(sample):\n    obs = sample['observation']\n    return -abs(obs['height'] - 1.5)\n```"
    reward = generated_reward(code_from="completion", columns=["observation"])
    assert reward(["stand up"], [code], observation=[{"height": 1.0}]) == [-0.5]


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        ("def reward(sample):\n    return 1 / 0", "failed (exit 1): ZeroDivisionError: division by zero"),
        ("def reward(sample):\n    return 'high'", "return 'high', expected a finite number"),
        ("def reward(sample):\n    return float('nan')", "return nan, expected a finite number"),
        ("def score(sample):\n    return 1.0", "defines no function reward(sample)"),
        ("def reward(sample) return 1", "SyntaxError"),
        ("import os\ndef reward(sample):\n    os._exit(0)", "exited before returning a reward"),
        ("def reward(sample):\n    while True:\n        pass", "timed out after 0.5 s"),
        ("def reward(sample):\n    return len(bytearray(1 << 30))", "ran out of memory (128 MiB per process)"),
    ],
)
def test_failing_generated_code_raises_naming_the_sample(code, cause):
    reward = generated_reward(timeout_s=0.5, memory_mb=128)
    with pytest.raises(GeneratedRewardError, match="sample 1: the generated reward code") as caught:
        reward(["p", "p"], ["a", "b"], reward_code=[LENGTH_CODE, code])
    assert caught.value.sample == 1 and cause in str(caught.value)


def test_reward_set_policy_handles_a_failing_sample_without_rerunning_the_others(monkeypatch):
    runs = []
    real_run = code_rewards.sandbox.run
    monkeypatch.setattr(code_rewards.sandbox, "run", lambda code, **kw: runs.append(code) or real_run(code, **kw))
    reward = generated_reward(name="l2r", columns=["answer"])
    codes = [MATCH_CODE, "def reward(sample):\n    raise KeyError('velocity')", MATCH_CODE]
    with RewardSet([RewardComponent(reward, on_error="abstain")]) as rewards:
        scored = rewards.score(["p"] * 3, ["7", "7", "8"], group_size=3, reward_code=codes, answer=["7", "7", "7"])
    values = scored.batch["l2r"].tolist()
    assert values[0] == 1.0 and math.isnan(values[1]) and values[2] == 0.0
    assert [f.sample for f in scored.failures] == [1] and "KeyError: 'velocity'" in scored.failures[0].cause
    assert len(runs) == 3  # the per-sample retry reused the cached results

    with RewardSet([RewardComponent(reward)]) as rewards, pytest.raises(RewardError, match="sample 1.*KeyError"):
        rewards.score(["p"] * 3, ["7", "7", "8"], group_size=3, reward_code=codes, answer=["7", "7", "7"])


def test_generated_reward_settings_are_checked():
    with pytest.raises(ValueError, match="code_from"):
        generated_reward(code_from="prompt")
    with pytest.raises(ValueError, match="entry_point"):
        generated_reward(entry_point="not an identifier")
    with pytest.raises(ValueError, match="sample 0: the sample must be JSON"):
        generated_reward(columns=["obj"])(["p"], ["c"], reward_code=[LENGTH_CODE], obj=[object()])
