import pytest

from polyreward.rewards import Constant, Linear, Step, check_reward
from polyreward.rewards.schedules import Piecewise, toolrl_dynamic

SAMPLES = [
    {"prompt": "2+3?", "completion": "<answer>5</answer>", "answer": "5"},
    {"prompt": "2+3?", "completion": "<answer>6</answer>", "answer": "5"},
    {"prompt": "1+1?", "completion": "two", "answer": "2"},
]


def good(prompts, completions, answer, **kwargs):
    return [1.0 if f"<answer>{a}</answer>" in c else 0.0 for c, a in zip(completions, answer, strict=True)]


def test_a_good_reward_passes():
    report = check_reward(good, SAMPLES)
    assert report.ok and report.values == [1.0, 0.0, 0.0]
    assert "picklable" in str(report)


@pytest.mark.parametrize(
    ("fn", "problem"),
    [
        (lambda prompts, completions: [1.0] * len(completions), "has no **kwargs"),
        (lambda completions, **kw: [1.0] * len(completions), "fewer than two positional"),
        (lambda prompts, completions, solution, **kw: [1.0] * len(completions), "requires column(s) ['solution']"),
        (lambda prompts, completions, **kw: [1.0], "returned 1 values for 3 completions"),
        (lambda prompts, completions, **kw: [float("nan")] * 3, "sample 0: returned nan"),
        (lambda prompts, completions, **kw: [None] * 3, "never applies"),
        (lambda prompts, completions, **kw: 1 / 0, "raised on the batch: ZeroDivisionError"),
        (lambda prompts, completions, **kw: [float(len(completions))] * len(completions), "scores 1.0 alone but 3.0"),
    ],
)
def test_problems_are_named(fn, problem):
    report = check_reward(fn, SAMPLES)
    assert not report.ok and any(problem in p for p in report.problems), report.problems


def test_notes_constant_and_unpicklable():
    report = check_reward(lambda prompts, completions, **kw: [0.5] * len(completions), SAMPLES)
    assert report.ok
    assert any("no signal" in n for n in report.notes) and any("not picklable" in n for n in report.notes)


def test_inconsistent_samples_are_an_error():
    with pytest.raises(ValueError, match=r"sample 1 lacks \['answer'\]"):
        check_reward(good, [SAMPLES[0], {"prompt": "p", "completion": "c"}])


def test_schedules():
    assert Constant(0.3)(1000) == 0.3
    ramp = Linear(start=2.0, end=3.0, steps=150)
    assert [ramp(s) for s in (0, 75, 150, 400)] == [2.0, 2.5, 3.0, 3.0]
    assert Linear(0.0, 1.0, steps=10, delay=5)(10) == 0.5
    switch = Step(boundaries=(30,), values=(1.0, 3.0))
    assert [switch(s) for s in (0, 29, 30, 100)] == [1.0, 1.0, 3.0, 3.0]
    with pytest.raises(ValueError, match="one more value than boundaries"):
        Step(boundaries=(1, 2), values=(1.0,))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        Linear(0.0, 1.0, steps=0)


def test_piecewise_and_toolrl_dynamic_schedule():
    ramp = Piecewise(((0, 1.0), (10, 3.0), (20, 0.0)))
    assert [ramp(s) for s in (-5, 0, 5, 10, 15, 30)] == [1.0, 1.0, 2.0, 3.0, 1.5, 0.0]
    with pytest.raises(ValueError, match="strictly increasing"):
        Piecewise(((5, 1.0), (5, 2.0)))
    schedule = toolrl_dynamic()

    def released_ranges(step):  # ToolRL rlla.py SCHEDULEREWARD, base ranges format [0, 1], correctness [-3, 3]
        fmt_max, fmt_min = max(2 - (2 - 1) * step / 150, 1), min(-2 + (2 + 0) * step / 150, -1)
        cor_max, cor_min = min((3 - 2) * step / 150 + 2, 3), max((-3 + 2) * step / 150 - 2, -3)
        return fmt_max - fmt_min, (cor_max - cor_min) / 6

    for step in (0, 30, 75, 100, 150, 300):
        width_format, scale_correctness = released_ranges(step)
        assert schedule["toolrl_format"](step) == pytest.approx(width_format)
        assert schedule["toolrl_correctness"](step) == pytest.approx(scale_correctness)
