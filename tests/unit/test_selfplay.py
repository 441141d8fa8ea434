"""PasoDoble pieces by hand: proposal parsing, validity, diversity, the Proposer reward, config errors."""

import pytest
import torch

from polyreward import advantages
from polyreward.batch import RewardBatch
from polyreward.config import ConfigError, load_config
from polyreward.lm.roles import group_rates, has_signal, prefixed
from polyreward.lm.selfplay import (
    DualPlayConfig,
    Proposal,
    ProposerRewards,
    arithmetic_qa,
    arithmetic_valid,
    arithmetic_value,
    diversity_score,
    jaccard,
    parse_proposal,
    phase_of,
    proposal_wellformed,
)
from polyreward.rewards import RewardSet


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<question>3 + 4</question><answer>7</answer>", Proposal("3 + 4", "7")),
        ("so <question> 2*5 </question> then <answer> 10 </answer>", Proposal("2*5", "10")),
        ("<question>1+1</question><answer>3</answer><answer>2</answer>", Proposal("1+1", "2")),  # the last answer
        ("<question>3 + 4</question>", None),  # no answer
        ("<answer>7</answer>", None),  # no question
        ("<question> </question><answer>7</answer>", None),  # empty question
        ("<question>3 + 4</question><answer></answer>", None),  # empty answer
        ("<question>3 + 4<answer>7</answer>", None),  # unclosed question
        ("", None),
    ],
)
def test_parse_proposal(text, expected):
    assert parse_proposal(text) == expected


def test_wellformed_is_the_papers_reward_hacking_check():
    assert proposal_wellformed(Proposal("3 + 4", "7"))
    assert not proposal_wellformed(Proposal("7 + 0", "7"))  # the answer is written into the question
    assert not proposal_wellformed(Proposal("5", "5 apples"))  # the question is inside the answer
    assert not proposal_wellformed(Proposal("1 + <answer>", "2"))
    assert not proposal_wellformed(Proposal("", "2"))


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("3 + 4 * 2", 11),
        ("What is (2 + 3) * 4?", 20),
        ("-5 + 2", -3),
        ("6 × 7 =", 42),
        ("2 ** 100", None),  # no powers
        ("3 / 2", None),  # no division
        ("__import__('os')", None),
        ("True + 1", None),
        ("x + 1", None),
        ("3 +", None),
        ("99999 * 99999 * 99999", None),  # beyond the magnitude limit
        ("1+" * 50 + "1", None),  # too long
    ],
)
def test_arithmetic_value(expression, value):
    assert arithmetic_value(expression) == value


def test_arithmetic_validity_compares_the_value_with_the_answer():
    assert arithmetic_valid(Proposal("3 + 4", "7"))
    assert arithmetic_valid(Proposal("2 - 9", "-7"))
    assert not arithmetic_valid(Proposal("3 + 4", "8"))
    assert not arithmetic_valid(Proposal("3 + 4", "7.0"))
    assert not arithmetic_valid(Proposal("3 + 4", "seven"))
    assert not arithmetic_valid(Proposal("three plus four", "7"))


def test_jaccard_and_diversity_by_hand():
    assert jaccard({1, 2}, {2, 3}) == pytest.approx(1 / 3) and jaccard(set(), set()) == 1.0
    history = [{1, 2, 3, 4, 5}, {10, 11}]
    assert diversity_score({1, 2, 3, 4, 5}, history) == 0.5  # identical to one of two: 1/2 dissimilar
    assert diversity_score({1, 2, 3, 4}, history) == 1.0  # Jaccard 4/5 = 0.8 is not above 0.8
    assert diversity_score({1, 2, 3, 4}, history, threshold=0.7) == 0.5
    assert diversity_score({7}, []) == 1.0  # no history yet


def test_proposer_reward_by_hand():
    r = ProposerRewards()  # lower 0.2, floor 0.3, 1.1 - p + 0.2 d
    assert r.scalar(True, 0.5, 1.0) == pytest.approx(0.8)
    assert r.scalar(True, 1.0, 0.5) == pytest.approx(0.2)  # always solved: 0.1 + 0.1
    assert r.scalar(True, 0.25, 0.31) == pytest.approx(0.85 + 0.062)
    assert r.scalar(True, 0.2, 1.0) == 0.0  # pass rate not above the lower threshold (maybe a wrong answer)
    assert r.scalar(True, 0.5, 0.3) == 0.0  # too similar to recent questions
    assert r.scalar(False, 0.5, 1.0) == 0.0  # invalid
    assert ProposerRewards(validity_weight=0.5).scalar(True, 0.0, 1.0) == 0.5


def test_named_components_keep_the_columns_and_grpo_reproduces_the_papers_scalar():
    valid = [True, True, False, True, True, True]
    rate = [0.5, 0.25, 0.0, 1.0, 0.0, 0.75]
    div = [1.0, 0.5, 0.0, 0.5, 1.0, 0.2]
    r = ProposerRewards()
    scored = RewardSet(r.components()).score(
        ["p"] * 6, ["c"] * 6, group_size=3, question_valid=valid, solver_pass_rate=rate, question_diversity=div
    )
    batch = scored.batch
    assert list(batch.names) == ["validity", "difficulty", "diversity"]
    expected = [[1, 0.6, 1.0], [1, 0.85, 0.5], [0, 0, 0], [1, 0.1, 0.5], [1, 0, 0], [1, 0, 0]]
    assert torch.allclose(batch.rewards, torch.tensor(expected, dtype=batch.rewards.dtype))
    assert batch.weights.tolist() == pytest.approx([0.0, 1.0, 0.2])
    scalar = [[r.scalar(*row)] for row in zip(valid, rate, div, strict=True)]
    assert [s[0] for s in scalar] == pytest.approx([0.8, 0.95, 0.0, 0.2, 0.0, 0.0])
    single = RewardBatch(rewards=scalar, names=["paper"], group_ids=[0, 0, 0, 1, 1, 1])
    got = advantages.compute("grpo", batch).advantages
    assert torch.allclose(got, advantages.compute("grpo", single).advantages, atol=1e-6)


def test_group_rates_and_signal():
    batch = RewardBatch(rewards=[[1], [0], [1], [1], [1], [1]], names=["correct"], group_ids=[0, 0, 0, 1, 1, 1])
    assert group_rates(batch, "correct", 3) == pytest.approx([2 / 3, 1.0])
    with pytest.raises(ValueError, match="'accuracy' is not one of"):
        group_rates(batch, "accuracy", 3)
    assert has_signal(batch)
    flat = RewardBatch(rewards=[[1, 0], [1, 5]], names=["a", "b"], group_ids=[0, 0], weights=[1.0, 0.0])
    assert not has_signal(flat)  # only a weight-0 component varies
    assert prefixed("solver", {"loss/kl": 1.0}) == {"solver/loss/kl": 1.0}


def test_phases():
    assert [phase_of(i, "joint", 2, 1) for i in range(3)] == ["joint"] * 3
    got = [phase_of(i, "alternating", 2, 1) for i in range(6)]
    assert got == ["proposer", "proposer", "solver", "proposer", "proposer", "solver"]


def test_arithmetic_knowledge_base():
    task = arithmetic_qa(5, seed=3, max_operand=9)
    assert len(task.proposer_rows) == 5 and task.validate(task.example)
    row = task.solver_row(Proposal("2 + 2", "4"))
    assert row["answer"] == "4" and row["prompt"][-1]["content"] == "What is 2 + 2?"
    assert task.solver_row(Proposal("What is 2 + 2?", "4"))["prompt"][-1]["content"] == "What is 2 + 2?"


def test_role_configs_take_shared_fields_defaults_and_overrides():
    config = DualPlayConfig(model="m", output_dir="runs/x", steps=7, proposer={"learning_rate": 0.5})
    proposer, solver = config.role_config("proposer"), config.role_config("solver")
    assert proposer.learning_rate == 0.5 and proposer.estimator == "grpo" and proposer.steps == 7
    assert proposer.output_dir.endswith("x/proposer") and solver.output_dir.endswith("x/solver")
    assert solver.model == "m" and solver.save_every == 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["mode=both"], "mode='both' is not one of"),
        (["pass_rate_lower=0.5", "pass_rate_upper=0.4"], "pass_rate_lower, pass_rate_upper"),
        (["similarity_threshold=0"], "similarity_threshold"),
        (["diversity_floor=1"], "diversity_floor"),
        (["proposer_phase_steps=0"], "proposer_phase_steps"),
        (["proposer={lerning_rate: 1}"], "proposer: unknown key 'lerning_rate'"),
        (["solver={group_size: 0}"], "solver: group_size: must be >= 1"),
        (["solver={estimator: nope}"], "solver: estimator"),
        (["proposer={model: other}"], r"proposer: \['model'\] are set for every role"),
        (["trainer=lm"], "trainer"),
    ],
)
def test_config_errors_name_the_field(settings, message):
    with pytest.raises(ConfigError, match=message):
        load_config(DualPlayConfig, None, settings)


# ---------------------------------------------------------------------------------------------- Complementary RL


def test_parse_lesson():
    from polyreward.lm.experience import parse_lesson

    assert parse_lesson("ok <lesson> carry the ten </lesson> done") == "carry the ten"
    assert parse_lesson("no tags") is None and parse_lesson("<lesson> </lesson>") is None
    assert parse_lesson("<lesson>" + "x" * 301 + "</lesson>") is None


def test_experience_bank_ranks_by_similarity_then_recency_and_forgets_the_oldest():
    from polyreward.lm.experience import Experience, ExperienceBank

    bank = ExperienceBank(capacity=3)
    for round_index, (lesson, key) in enumerate([("a", [1, 2]), ("b", [3, 4]), ("c", [1, 2]), ("d", [9])]):
        bank.add(Experience(lesson, key, 0.5, round_index))
    assert [x.lesson for x in bank.items] == ["b", "c", "d"]  # "a" left first
    assert bank.retrieve({1, 2}, 2) == ["c", "d"]  # c: Jaccard 1; b and d: 0, the newer first
    assert bank.retrieve({3}, 1) == ["b"] and bank.retrieve({1}, 0) == []


def test_extractor_rewards_are_the_paired_gain_and_the_format():
    from polyreward.lm.experience import extractor_rewards

    scored = RewardSet(extractor_rewards()).score(
        ["p"] * 4,
        ["c"] * 4,
        group_size=2,
        lesson_parsed=[True, False, True, True],
        success_with=[0.75, 0.25, 0.0, 1.0],
        success_without=[0.25, 0.25, 0.5, 0.5],
    )
    assert list(scored.batch.names) == ["lesson_format", "lesson_gain"]
    expected = [[1, 0.5], [0, 0], [1, -0.5], [1, 0.5]]
    assert torch.allclose(scored.batch.rewards, torch.tensor(expected, dtype=scored.batch.rewards.dtype))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["retrieve=-1"], "retrieve"),
        (["bank_capacity=0"], "bank_capacity"),
        (["min_gain=1"], "min_gain"),
        (["actor={group_size: 0}"], "actor: group_size"),
        (["extractor={seed: 3}"], r"extractor: \['seed'\]"),
    ],
)
def test_complementary_config_errors_name_the_field(settings, message):
    from polyreward.lm.experience import ComplementaryConfig

    with pytest.raises(ConfigError, match=message):
        load_config(ComplementaryConfig, None, settings)


def test_arithmetic_experience_puts_lessons_in_the_system_message():
    from polyreward.lm.experience import arithmetic_experience

    task = arithmetic_experience(2, seed=0)
    row = task.actor_rows[0]
    assert task.with_lessons(row, []) is row
    taught = task.with_lessons(row, ["check the sum"])
    assert taught["prompt"][0]["content"].endswith("- check the sum") and taught["answer"] == row["answer"]
    assert row["prompt"][0]["content"] != taught["prompt"][0]["content"]  # the row itself is unchanged
    assert "was wrong" in task.extractor_prompt(row, "<answer>3</answer>", 0.0)[-1]["content"]


def test_example_config_loads():
    from pathlib import Path

    from polyreward.config import trainer_kind

    path = Path(__file__).parents[2] / "configs" / "dual_play-arithmetic.yaml"
    config = load_config(DualPlayConfig, path)
    assert trainer_kind(path) == "dual_play" and config.model == "smollm2-135m"
    assert config.role_config("proposer").estimator == "grpo" and config.rewards() == ProposerRewards()
