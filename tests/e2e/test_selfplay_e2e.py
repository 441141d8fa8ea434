"""Dual play (PasoDoble) on the tiny offline model: joint and alternating rounds, the held role's
weights, metrics, checkpoint and resume, and the CLI."""

import json

import pytest
import torch
import yaml

from polyreward.cli import main
from polyreward.lm.selfplay import DualPlayConfig, Proposal, QATask, build_dual_play

from .tiny_lm import WORDS, make_tiny_model

ANSWERS = {"one", "two", "three", "red", "blue"}


def parse_words(text: str) -> Proposal | None:
    """Toy proposals: the first word is the question, the last the answer."""
    words = text.split()
    return Proposal(words[0], words[-1]) if len(words) >= 2 else None


def says_answer(prompts, completions, answer, **kwargs):
    return [1.0 if a in c.split() else 0.0 for c, a in zip(completions, answer, strict=True)]


def word_task() -> QATask:
    rows = [{"prompt": f"say {w} please", "knowledge": w} for w in WORDS]
    return QATask(
        "words",
        rows,
        validate=lambda p: p.answer in ANSWERS,
        solver_row=lambda p: {"prompt": f"say {p.question} please", "answer": p.answer},
        solver_rewards=[says_answer],
        example=Proposal("say", "one"),
        parse=parse_words,
        pass_reward="says_answer",
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _config(model_dir, run_dir, **overrides) -> DualPlayConfig:
    values = dict(
        model=str(model_dir),
        output_dir=str(run_dir),
        steps=2,
        save_every=1,
        threads=1,
        pass_rate_lower=0.0,
        validity_weight=1.0,
        skip_uninformative=False,
        proposer={"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 6, "learning_rate": 1e-2},
        solver={"group_size": 4, "max_new_tokens": 6, "learning_rate": 1e-2},
    )
    return DualPlayConfig(**{**values, **overrides})


def _weights(trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.model.parameters() if p.requires_grad]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _untimed(run_dir) -> list[dict]:
    return [{k: v for k, v in r.items() if "time/" not in k} for r in _records(run_dir)]


def test_joint_round_updates_both_roles_and_logs_per_role_metrics(model_dir, tmp_path):
    play = build_dual_play(_config(model_dir, tmp_path / "run"), word_task())
    before = {role: _weights(t) for role, t in play.roles.items()}
    metrics = play.play_round()
    assert metrics["selfplay/phase"] == 0.0 and metrics["selfplay/skipped"] == 0.0
    assert 0.0 < metrics["selfplay/valid_fraction"] < 1.0
    assert 0.0 <= metrics["selfplay/solver_pass_rate"] <= 1.0
    for key in ("proposer/reward/validity/mean", "proposer/reward/difficulty/mean", "proposer/reward/diversity/mean"):
        assert key in metrics
    assert "solver/reward/says_answer/mean" in metrics and "solver/loss/policy" in metrics
    assert metrics["selfplay/proposer_learned"] == 1.0 and metrics["selfplay/solver_learned"] == 1.0
    for role, trainer in play.roles.items():
        assert not _same(before[role], _weights(trainer)), role


def test_alternating_phases_hold_the_other_role_fixed(model_dir, tmp_path):
    config = _config(model_dir, tmp_path / "run", mode="alternating", proposer_phase_steps=1, solver_phase_steps=1)
    play = build_dual_play(config, word_task())
    proposer0, solver0 = _weights(play.proposer), _weights(play.solver)
    first = play.play_round()  # round 0: the Proposer's phase
    play.round += 1
    assert first["selfplay/phase"] == 1.0 and first["selfplay/solver_learned"] == 0.0
    assert not _same(proposer0, _weights(play.proposer)) and _same(solver0, _weights(play.solver))
    proposer1 = _weights(play.proposer)
    second = play.play_round()  # round 1: the Solver's phase
    assert second["selfplay/phase"] == 2.0 and second["selfplay/proposer_learned"] == 0.0
    assert _same(proposer1, _weights(play.proposer)) and not _same(solver0, _weights(play.solver))


def test_resume_restores_both_roles_and_the_round(model_dir, tmp_path):
    full = build_dual_play(_config(model_dir, tmp_path / "full", steps=3), word_task())
    full.train(progress=False)
    part = build_dual_play(_config(model_dir, tmp_path / "part", steps=2), word_task())
    part.train(progress=False)
    resumed = build_dual_play(_config(model_dir, tmp_path / "part", steps=3), word_task())
    resumed.train(resume=True, progress=False)
    assert resumed.round == 3 and resumed.history == full.history
    for role in ("proposer", "solver"):
        assert _same(_weights(full.roles[role]), _weights(resumed.roles[role])), role
        assert resumed.roles[role].state.position == full.roles[role].state.position
    assert _untimed(tmp_path / "full") == _untimed(tmp_path / "part")  # metrics.jsonl as if never stopped
    with pytest.raises(FileExistsError):
        build_dual_play(_config(model_dir, tmp_path / "part", steps=4), word_task()).train(progress=False)


def test_cli_trains_the_builtin_arithmetic_knowledge_base(model_dir, tmp_path):
    path = tmp_path / "dual.yaml"
    config = {
        "trainer": "dual_play",
        "model": str(model_dir),
        "output_dir": str(tmp_path / "run"),
        "steps": 1,
        "threads": 1,
        "proposer": {"prompts_per_step": 1, "group_size": 2, "max_new_tokens": 4},
        "solver": {"group_size": 2, "max_new_tokens": 4},
    }
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--no-progress"]) == 0
    record = _records(tmp_path / "run")[0]
    assert record["selfplay/valid_fraction"] == 0.0 and record["selfplay/skipped"] == 1.0  # a random model
    assert (tmp_path / "run" / "proposer" / "checkpoints" / "step-0000001").is_dir()
    assert (tmp_path / "run" / "checkpoints" / "step-0000001" / "COMPLETE").is_file()


# ---------------------------------------------------------------------------------------------- Complementary RL


def experience_task():
    from polyreward.lm.experience import ExperienceTask

    rows = [{"prompt": f"say {w} please", "answer": w} for w in WORDS]
    return ExperienceTask(
        "words",
        rows,
        [says_answer],
        with_lessons=lambda row, lessons: {**row, "prompt": " ".join([*lessons, row["prompt"]])},
        extractor_prompt=lambda row, attempt, success: f"{row['prompt']} {attempt} {'yes' if success else 'no'}",
        key=lambda row: row["prompt"],
        parse=lambda text: text.strip() or None,
        success_reward="says_answer",
    )


def _complementary(model_dir, run_dir, **overrides):
    from polyreward.lm.experience import ComplementaryConfig, build_complementary

    values = dict(
        model=str(model_dir),
        output_dir=str(run_dir),
        steps=2,
        save_every=1,
        threads=1,
        min_gain=-1.0,  # every parsed lesson's best enters the bank
        actor={"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 6, "learning_rate": 1e-2},
        extractor={"group_size": 2, "max_new_tokens": 4, "learning_rate": 1e-2},
    )
    return build_complementary(ComplementaryConfig(**{**values, **overrides}), experience_task())


def test_complementary_round_trains_both_roles_and_fills_the_bank(model_dir, tmp_path):
    loop = _complementary(model_dir, tmp_path / "run")
    before = {role: _weights(t) for role, t in loop.roles.items()}
    metrics = loop.play_round()
    for key in ("actor/reward/says_answer/mean", "extractor/reward/lesson_gain/mean", "extractor/loss/policy"):
        assert key in metrics
    assert metrics["experience/parsed_fraction"] > 0 and metrics["experience/bank_size"] >= 1
    for role, trainer in loop.roles.items():
        assert not _same(before[role], _weights(trainer)), role
    loop.round += 1
    assert loop.play_round()["experience/retrieved"] > 0  # the second round reads the bank


def test_complementary_resume_restores_the_bank(model_dir, tmp_path):
    full = _complementary(model_dir, tmp_path / "full", steps=3)
    full.train(progress=False)
    _complementary(model_dir, tmp_path / "part", steps=2).train(progress=False)
    resumed = _complementary(model_dir, tmp_path / "part", steps=3)
    resumed.train(resume=True, progress=False)
    assert [x.lesson for x in resumed.bank.items] == [x.lesson for x in full.bank.items]
    assert _same(_weights(full.actor), _weights(resumed.actor))
    assert _untimed(tmp_path / "full") == _untimed(tmp_path / "part")
