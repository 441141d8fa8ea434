"""ToolRL and MatchTIR rewards: the spec's hand-computed cases plus brute-force and peer checks."""

import itertools
import json
import pickle

import numpy as np
import ot
import pytest

from polyreward.batch import RewardBatch
from polyreward.rewards._columns import RewardInputError
from polyreward.rewards.tools import (
    ToolRLTarget,
    answer_f1,
    assign_hard,
    assign_ot,
    hard_matching,
    matchtir_turn_reward,
    matchtir_turn_rewards,
    multiset_jaccard,
    pad_turns,
    parse_tool_calls,
    parse_toolrl_calls,
    parse_toolrl_target,
    tool_call_similarity,
    tool_similarity_matrix,
    toolrl_correctness,
    toolrl_format,
    toolrl_rewards,
)


def call(name, **params):
    return {"name": name, "parameters": params}


WEATHER = [call("get_weather", city="Paris", unit="C")]


# ---------------------------------------------------------------------------------------------- ToolRL
def test_multiset_jaccard_by_hand():
    assert multiset_jaccard([], []) == 1.0
    assert multiset_jaccard(["a"], []) == 0.0
    assert multiset_jaccard(["a", "b"], ["b", "a"]) == 1.0
    assert multiset_jaccard(["a", "a", "b"], ["a", "b", "b"]) == pytest.approx(2 / 4)  # counts: a 1, b 1


def test_toolrl_correctness_spec_cases():
    assert toolrl_correctness(WEATHER, [call("get_weather", city="Paris", unit="F")]) == pytest.approx(1.5)
    assert toolrl_correctness(WEATHER, [call("get_weather", city="Paris"), call("search", q="x")]) == pytest.approx(0.0)


def test_toolrl_correctness_extremes():
    assert toolrl_correctness(WEATHER, WEATHER) == 3.0
    assert toolrl_correctness(WEATHER, None) == -3.0  # parse failure
    assert toolrl_correctness(WEATHER, [{"no": "name"}]) == -3.0
    assert toolrl_correctness(WEATHER, [call("Get_Weather", city="Paris", unit="C")]) == -3.0  # names are case-sensitive
    assert toolrl_correctness(WEATHER, WEATHER, rmin=-1, rmax=1) == 1.0


def test_toolrl_correctness_multi_call_by_hand():
    gt = [call("f", a=1, b=2), call("g", c=3)]
    pred = [call("g", c=3), call("f", a=1), call("f", a=1, b=2)]
    # names J([f,g],[g,f,f]) = 2/3; f -> best f(a=1,b=2): 1 + 2; g -> 1 + 1; Smax = 1 + 3 + 2
    assert toolrl_correctness(gt, pred) == pytest.approx(6 * (2 / 3 + 3 + 2) / 6 - 3)
    assert toolrl_correctness(gt, list(reversed(gt))) == pytest.approx(3.0)  # reordered: S = Smax


def test_toolrl_correctness_is_greedy_in_ground_truth_order():
    gt = [call("f", a=1), call("f", a=1, b=2)]
    pred = [call("f", a=1, b=2)]
    # gt0 takes the only prediction (1/2 + 1 = 1.5 > 0), gt1 gets nothing: S = 1/2 + 1.5, Smax = 1 + 2 + 3
    assert toolrl_correctness(gt, pred) == pytest.approx(6 * 2.0 / 6 - 3)


def test_parse_toolrl_calls():
    lines = '{"name": "f", "parameters": {"a": 1}}\n{"name": "g", "parameters": {}}'
    text = f"<think>x</think>\n<tool_call>\n{lines}\n</tool_call>"
    assert parse_toolrl_calls(text) == [{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": {}}]
    assert parse_toolrl_calls(text.replace("}\n{", "}\n\n{")) is None  # blank line: json error
    assert parse_toolrl_calls(text.replace("</tool_call>", "")) is None
    assert parse_toolrl_calls('<tool_call>\n{"name": 3}\n</tool_call>') is None


@pytest.mark.parametrize(
    ("text", "target", "expected"),
    [
        ("<think>a</think>\n<response>hi</response>", ToolRLTarget(None, True), 1.0),
        ("<think>a</think>\n<tool_call>\n{}\n</tool_call>", ToolRLTarget([], False), 1.0),
        ("<think>a</think>\n<tool_call>\n{}\n</tool_call>\n<response>r</response>", ToolRLTarget([], True), 1.0),
        ("<think>a</think>", ToolRLTarget(None, False), 1.0),
        ("  <think>a</think>\n<response>hi</response>\n", ToolRLTarget(None, True), 1.0),  # stripped first
        ("<think>a</think><response>hi</response>", ToolRLTarget(None, True), 0.0),  # missing newline
        ("<think>a</think>\n<response>hi</response><response>x</response>", ToolRLTarget(None, True), 0.0),
        ("<think>a</think>\n<response>hi</response>", ToolRLTarget([], False), 0.0),  # tool call expected
        ("<think>a</think>\n<tool_call>\n{}\n</tool_call>", ToolRLTarget([], True), 0.0),  # response missing
    ],
)
def test_toolrl_format_cases(text, target, expected):
    assert toolrl_format(text, target) == expected


def test_parse_toolrl_target_forms():
    answer = '<think>t</think>\n<tool_call>\n{"name": "f", "parameters": {"a": 1}}\n</tool_call>\n<response>r</response>'
    assert parse_toolrl_target(answer) == ToolRLTarget([{"name": "f", "arguments": {"a": 1}}], True)
    assert parse_toolrl_target("<think>t</think>\n<response>r</response>") == ToolRLTarget(None, True)
    assert parse_toolrl_target([call("f", a=1)]) == ToolRLTarget([{"name": "f", "arguments": {"a": 1}}], False)
    assert parse_toolrl_target({"tool_calls": None, "response": True}) == ToolRLTarget(None, True)
    with pytest.raises(ValueError):
        parse_toolrl_target("<tool_call>\nnot json\n</tool_call>")


def test_toolrl_rewards_batched():
    fmt, correct = toolrl_rewards()
    assert (fmt.__name__, correct.__name__) == ("toolrl_format", "toolrl_correctness")
    line = json.dumps(call("get_weather", city="Paris", unit="F"))
    good = f"<think>t</think>\n<tool_call>\n{line}\n</tool_call>"
    chat = [{"role": "user", "content": "q"}, {"role": "assistant", "content": good}]
    answers = [WEATHER, WEATHER, "<think>t</think>\n<response>r</response>", None, WEATHER]
    completions = [good, chat, "<think>t</think>\n<response>hello</response>", good, "no tags at all"]
    assert fmt([""] * 5, completions, answer=answers, trainer_state=None) == [1.0, 1.0, 1.0, None, 0.0]
    assert correct([""] * 5, completions, answer=answers) == [1.5, 1.5, None, None, -3.0]
    assert pickle.loads(pickle.dumps(correct))([""], [good], answer=[WEATHER]) == [1.5]


def test_toolrl_rewards_input_errors_name_sample_and_column():
    fmt, correct = toolrl_rewards()
    with pytest.raises(RewardInputError, match="needs the dataset column 'answer'"):
        fmt([""], ["x"], solution=["y"])
    with pytest.raises(RewardInputError, match="sample 1, column 'answer'"):
        correct([""] * 2, ["x", "y"], answer=[WEATHER, 42])
    with pytest.raises(RewardInputError, match="must hold one value per completion \\(2\\), got 3 values"):
        correct([""] * 2, ["x", "y"], answer=[WEATHER] * 3)
    with pytest.raises(RewardInputError, match="sample 0"):
        correct([""], [123], answer=[WEATHER])


# ---------------------------------------------------------------------------------------------- MatchTIR
GTS = [{"name": "a", "parameters": {"x": 1}}, {"name": "b", "parameters": {"y": 2, "z": 3}}]
PREDS = [
    {"name": "a", "arguments": {"x": 1}},
    {"name": "b", "arguments": '{"y": 2, "z": 0}'},  # arguments as JSON text
    {"name": "B", "arguments": {"y": 5}},  # names compare case-insensitively
]


def test_similarity_matrix_spec():
    assert tool_similarity_matrix(PREDS, GTS) == pytest.approx(np.array([[1, 0], [0, 0.75], [0, 0.375]]))
    assert tool_call_similarity({"name": "f"}, {"name": "f"}) == 1.0  # no arguments on either side: (1 + 1) / 2


def test_hard_assignment_spec():
    s = tool_similarity_matrix(PREDS, GTS)
    for solver in ("greedy", "hungarian"):
        assert assign_hard(s, solver).tolist() == [1.0, 0.75, 0.0]
        assert assign_hard(s, solver, unmatched_penalty=-0.5).tolist() == [1.0, 0.75, -0.5]
        assert hard_matching(s, solver).tolist() == [0, 1, -1]


def test_greedy_and_hungarian_disagree():
    s = [[0.9, 0.8], [0.8, 0.0]]
    assert assign_hard(s, "greedy").tolist() == [0.9, 0.0]  # total 0.9
    assert assign_hard(s, "hungarian").tolist() == [0.8, 0.8]  # total 1.6


def _released_greedy(s):
    """The released MatchTIR ``hungarian_assignment`` (a greedy rule), transcribed for comparison."""
    pairs = sorted(((s[i][j], i, j) for i in range(len(s)) for j in range(len(s[0]))), reverse=True, key=lambda x: x[0])
    assignment, used = [None] * len(s), set()
    for score, i, j in pairs:
        if assignment[i] is None and j not in used and score > 0:
            assignment[i] = j
            used.add(j)
    return [-1 if a is None else a for a in assignment]


def _brute_force_best_total(s):
    p, g = s.shape
    n = max(p, g)
    padded = np.zeros((n, n))
    padded[:p, :g] = s
    return max(padded[np.arange(n), list(perm)].sum() for perm in itertools.permutations(range(n)))


def test_matchings_against_brute_force_and_released_rule():
    rng = np.random.default_rng(0)
    for _ in range(200):
        p, g = rng.integers(1, 5, size=2)
        s = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], size=(p, g))  # many ties exercise the tie-breaking
        greedy = hard_matching(s, "greedy")
        assert greedy.tolist() == _released_greedy(s.tolist())
        best = _brute_force_best_total(s)
        assert assign_hard(s, "hungarian").sum() == pytest.approx(best)
        assert assign_hard(s, "greedy").sum() <= best + 1e-12
        matched = [j for j in hard_matching(s, "hungarian") if j >= 0]
        assert len(matched) == len(set(matched))


def _own_sinkhorn(s, reg, iters=5000):
    p, g = s.shape
    a, b = np.full(p, 1 / p), np.full(g, 1 / g)
    k = np.exp(s / reg)  # cost -S
    u, v = np.ones(p), np.ones(g)
    for _ in range(iters):
        u = a / (k @ v)
        v = b / (k.T @ u)
    return u[:, None] * k * v[None, :]


def test_ot_assignment_spec_and_own_sinkhorn():
    s = tool_similarity_matrix(PREDS, GTS)
    assert assign_ot(s, reg=0.1) == pytest.approx([0.3333, 0.2447, 0.0651], abs=2e-3)
    plan = _own_sinkhorn(s, 0.1)
    assert plan.sum(1) == pytest.approx(np.full(3, 1 / 3))
    assert plan.sum(0) == pytest.approx(np.full(2, 1 / 2))
    assert assign_ot(s, reg=0.1) == pytest.approx((plan * s).sum(1), abs=1e-6)
    pot_plan = ot.sinkhorn(np.full(3, 1 / 3), np.full(2, 1 / 2), -s, 0.1)
    assert pot_plan.sum(1) == pytest.approx(np.full(3, 1 / 3), abs=1e-6)
    assert assign_ot(np.zeros((2, 0))).tolist() == [0.0, 0.0]
    assert assign_ot(np.zeros((0, 2))).tolist() == []


def test_answer_f1_by_hand():
    assert answer_f1("The Eiffel Tower!", "eiffel tower") == pytest.approx(0.8)  # p = 2/3, r = 1
    assert answer_f1("", "x") == 0.0
    assert answer_f1("Paris, France", "paris") == pytest.approx(2 / 3)


def _turn(*calls):
    return "<think>t</think>" + "".join(f"<tool_call>{json.dumps(c)}</tool_call>" for c in calls)


TRAJECTORY = [_turn(PREDS[0], PREDS[1]), _turn(PREDS[2]), "<think>t</think><answer>Paris, France</answer>", "thinking"]


def test_matchtir_turn_rewards_hard_and_ot():
    hard = matchtir_turn_rewards(TRAJECTORY, GTS, "Paris")
    assert hard == pytest.approx([(1 + 0.75) / 2, 0.0, 2 / 3, 0.0])
    soft = matchtir_turn_rewards(TRAJECTORY, GTS, "Paris", assignment="ot")
    assert soft == pytest.approx([(0.3333 + 0.2447) / 2, 0.0651, 2 / 3, 0.0], abs=2e-3)


def test_parse_tool_calls_lenient():
    text = (
        '<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call><tool_call>oops</tool_call>'
        '<tool_call>\n{"name": "g", "parameters": {}}\n{"name": "h"}\n</tool_call>'
    )
    assert parse_tool_calls(text) == [
        {"name": "f", "arguments": {"a": 1}},
        {"name": "g", "arguments": {}},
        {"name": "h", "arguments": {}},
    ]


def test_matchtir_batched_chat_and_strings():
    fn = matchtir_turn_reward(turn_separator="<sep>")
    assert fn.__name__ == "matchtir_greedy"
    chat = [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": PREDS[0]}, {"type": "function", "function": PREDS[1]}],
        },
        {"role": "tool", "content": "result"},
        {"role": "assistant", "content": _turn(PREDS[2])},
        {"role": "assistant", "content": "<answer>Paris, France</answer>"},
    ]
    out = fn(
        ["q"] * 3,
        [chat, "<sep>".join(TRAJECTORY[:3]), "x"],
        tool_calls=[GTS, json.dumps(GTS), None],
        answer=["Paris", "Paris", "Paris"],
    )
    assert out[0] == pytest.approx([0.875, 0.0, 2 / 3])
    assert out[1] == pytest.approx([0.875, 0.0, 2 / 3])
    assert out[2] is None
    padded = pad_turns(out)
    assert padded[2] == [None, None, None]
    batch = RewardBatch.from_turns(padded, group_ids=[0, 0, 0])
    assert batch.turn_rewards.shape == (3, 3)
    assert batch["turns"].tolist() == pytest.approx([0.875 + 2 / 3, 0.875 + 2 / 3, 0.0])


def test_matchtir_batched_errors():
    fn = matchtir_turn_reward(assignment="ot")
    assert fn.__name__ == "matchtir_ot"
    with pytest.raises(RewardInputError, match="sample 0, column 'tool_calls'"):
        fn(["q"], ["x"], tool_calls=["not json"], answer=["a"])
    with pytest.raises(RewardInputError, match="sample 0, column 'answer'"):
        fn(["q"], ["x"], tool_calls=[GTS], answer=[3])
    with pytest.raises(ValueError, match="solver"):
        matchtir_turn_reward(solver="auction")
