"""The language-model trainer on a tiny random model: a real run, accumulation invariance, exact resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from polyreward.lm.model import load_policy
from polyreward.lm.trainer import Trainer

from .tiny_lm import ROWS, is_short, make_tiny_model, says_yes, tiny_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _trainer(model_dir, run_dir, **overrides):
    config = tiny_config(run_dir, model_dir, **overrides)
    model, tokenizer = load_policy(config.model)
    return Trainer(model, tokenizer, [says_yes, is_short], ROWS, config)


def test_a_short_run_writes_metrics_samples_and_checkpoints(model_dir, tmp_path):
    run = _trainer(model_dir, tmp_path / "run", steps=3).train(progress=False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2]
    for key in (
        "reward/says_yes/mean",
        "reward/is_short/mean",
        "loss/policy",
        "loss/entropy",
        "adv/std",
        "diag/says_yes/adv_share",
        "time/samples_per_s",
    ):
        assert key in records[0], key
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and set(samples[0]["rewards"]) == {"says_yes", "is_short"}
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000001", "step-0000002", "step-0000003"]
    assert list((run / "tensorboard").iterdir())


def test_training_moves_the_rewards_up(model_dir, tmp_path):
    trainer = _trainer(model_dir, tmp_path / "run", steps=30, save_every=0, group_size=8, prompts_per_step=4)
    run = trainer.train(progress=False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    first = sum(r["reward/says_yes/mean"] for r in records[:5]) / 5
    last = sum(r["reward/says_yes/mean"] for r in records[-5:]) / 5
    assert last > first + 0.1, (first, last)


def _step_gradients(trainer):
    """Run one step and return the gradients the optimizer receives."""
    captured = {}
    apply = trainer._apply_gradients

    def capture():
        captured.update({n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None})
        return apply()

    trainer._apply_gradients = capture
    trainer.step()
    return captured


@pytest.mark.parametrize("reduction", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "constant"])
def test_gradient_accumulation_1x8_equals_8x1(model_dir, tmp_path, reduction):
    """One step with micro-batches of 1 (8 accumulations) gives the gradient of one micro-batch of 8."""
    grads = [
        _step_gradients(
            _trainer(
                model_dir,
                tmp_path / f"run{micro}",
                steps=1,
                micro_batch_size=micro,
                loss_reduction=reduction,
                prompts_per_step=2,
                group_size=4,
                save_every=0,
            )
        )
        for micro in (1, 8)
    ]
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    assert any(g.abs().max() > 0 for g in grads[0].values())
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-7, rtol=1e-4)


def _run_script(run_dir, steps, model_dir, resume=False):
    cmd = [sys.executable, "-m", "tests.e2e.tiny_lm", str(run_dir), str(steps), str(model_dir)]
    return cmd + (["--resume"] if resume else [])


def test_sigkill_then_resume_is_bit_identical(model_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    steps = 6
    subprocess.run(_run_script(tmp_path / "straight", steps, model_dir), check=True, cwd=ROOT, env=env, timeout=300)
    victim = subprocess.Popen(_run_script(tmp_path / "killed", steps, model_dir), cwd=ROOT, env=env)
    third = tmp_path / "killed" / "checkpoints" / "step-0000003" / "COMPLETE"
    deadline = time.time() + 240
    while not third.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert third.exists()
    subprocess.run(
        _run_script(tmp_path / "killed", steps, model_dir, resume=True), check=True, cwd=ROOT, env=env, timeout=300
    )
    final = f"checkpoints/step-{steps:07d}/model/model.safetensors"
    a, b = load_file(tmp_path / "straight" / final), load_file(tmp_path / "killed" / final)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def untimed(path):
        return [
            {k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
            for line in (path / "metrics.jsonl").read_text().splitlines()
        ]

    assert untimed(tmp_path / "straight") == untimed(tmp_path / "killed")


def test_resume_errors_are_clear(model_dir, tmp_path):
    from polyreward.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="no checkpoints/ directory"):
        _trainer(model_dir, tmp_path / "empty").train(resume=True, progress=False)
    partial = tmp_path / "partial" / "checkpoints" / "step-0000002.partial"
    partial.mkdir(parents=True)
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        _trainer(model_dir, tmp_path / "partial").train(resume=True, progress=False)
    run = _trainer(model_dir, tmp_path / "done", steps=1).train(progress=False)
    with pytest.raises(FileExistsError, match="already holds a run"):
        _trainer(model_dir, run, steps=1).train(progress=False)
    with pytest.raises(ValueError, match="config differs"):
        _trainer(model_dir, run, steps=2, learning_rate=0.5).train(resume=True, progress=False)


def test_cli_train_report_and_eval_on_a_tiny_model(model_dir, tmp_path, capsys):
    from polyreward.cli import main

    config = tmp_path / "tiny.yaml"
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": r["prompt"], "answer": "yes"}) + "\n" for r in ROWS))
    config.write_text(
        f"model: {model_dir}\ntask: {rows}\n"
        "rewards: [{kind: answer, name: says_yes, params: {tag: null, boxed: false}}]\n"
        f"steps: 2\nprompts_per_step: 2\ngroup_size: 2\nmax_new_tokens: 4\noutput_dir: {tmp_path / 'run'}\nthreads: 1\n"
    )
    assert main(["train", str(config), "--no-progress", "--set", "learning_rate=0.001"]) == 0
    out = capsys.readouterr().out
    assert f"report: {tmp_path / 'run' / 'report' / 'index.html'}" in out
    assert (tmp_path / "run" / "report" / "index.html").is_file()
    assert main(["eval", str(config), "--run", str(tmp_path / "run"), "--prompts", "3"]) == 0
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert result["prompts"] == 3 and "reward/says_yes/mean" in result
    assert main(["train", str(config), "--set", "estimator=nope"]) == 2
    assert "estimator: 'nope' is not registered" in capsys.readouterr().err


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_embeddings(model_dir, tmp_path, freeze):
    config = tiny_config(tmp_path / "run", model_dir, steps=1, save_every=0, freeze_embeddings=freeze)
    model, tokenizer = load_policy(config.model, freeze_embeddings=config.freeze_embeddings)
    before = model.get_input_embeddings().weight.detach().clone()
    Trainer(model, tokenizer, [says_yes, is_short], ROWS, config).step()
    assert torch.equal(model.get_input_embeddings().weight, before) == freeze


def constant(prompts, completions, **kwargs):
    return [1.0] * len(completions)


def test_dynamic_sampling_drops_groups_where_every_reward_is_flat(model_dir, tmp_path):
    from polyreward.batch import RewardBatch
    from polyreward.lm.trainer import _drop_flat_groups

    batch = RewardBatch(
        rewards=[[1, 0], [1, 0], [1, 0], [1, 1], [0, 0], [1, 0]], names=["a", "b"], group_ids=[0, 0, 1, 1, 2, 2]
    )  # group 0 flat in both, group 1 varies in b, group 2 in a

    class Rows:
        def subset(self, rows):
            return rows.tolist()

    kept, rows = _drop_flat_groups(batch, Rows())
    assert rows == [2, 3, 4, 5] and kept.group_ids.tolist() == [1, 1, 2, 2]
    trainer = _trainer(model_dir, tmp_path / "run", steps=1, dynamic_sampling=True, save_every=0)
    trainer.rewards = type(trainer.rewards)([constant, says_yes])
    metrics = trainer.step()
    assert metrics["batch/samples"] <= 8 and metrics["batch/samples"] % 4 == 0


def words(prompts, completions, **kwargs):
    return [len(c.split()) / 6 for c in completions]


def short_letters(prompts, completions, **kwargs):
    """Positive only for short completions: HDPO's qualifying set."""
    return [len(c) / 30 if len(c.split()) <= 3 else 0.0 for c in completions]


def test_hdpo_trains_two_channels_with_the_conditional_one_masked(model_dir, tmp_path):
    import polyreward as pr
    from polyreward.lm.trainer import _sample_mask

    batch = pr.RewardBatch(rewards=[[1, 1.0], [1, 0.5], [0, 0.0], [1, 0.0]], names=["correct", "tool"])
    result = pr.advantages.compute("hdpo", batch)
    assert _sample_mask(result, "primary", result.channels["primary"]).tolist() == [True] * 4
    assert _sample_mask(result, "conditional", result.channels["conditional"]).tolist() == [True, True, False, False]
    trainer = _trainer(
        model_dir,
        tmp_path / "run",
        steps=1,
        estimator="hdpo",
        save_every=0,
        group_size=8,
        estimator_params={"conditional_weight": 0.15},
    )
    trainer.rewards = type(trainer.rewards)([words, short_letters])
    assert trainer.step()["loss/grad_norm"] > 0


def test_kl_to_the_initial_policy_is_zero_at_first_and_grows(model_dir, tmp_path):
    trainer = _trainer(model_dir, tmp_path / "run", steps=3, kl_coef=0.1, save_every=0)
    first = trainer.step()
    assert first["loss/kl"] == pytest.approx(0.0, abs=1e-6)  # the policy is still the reference
    later = [trainer.step()["loss/kl"] for _ in range(2)]
    assert later[-1] > 0


def test_bfloat16_and_lora_runs(model_dir, tmp_path):
    from polyreward.lm.model import LoraSettings

    config = tiny_config(tmp_path / "bf16", model_dir, steps=1, dtype="bfloat16", save_every=0)
    model, tokenizer = load_policy(config.model, "bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert Trainer(model, tokenizer, [says_yes, is_short], ROWS, config).step()["loss/grad_norm"] >= 0
    lora = LoraSettings(rank=4, alpha=8)
    model, tokenizer = load_policy(str(model_dir), lora=lora)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    config = tiny_config(tmp_path / "lora", model_dir, steps=1, save_every=0)
    Trainer(model, tokenizer, [says_yes, is_short], ROWS, config).step()


def test_lora_run_resumes_exactly(model_dir, tmp_path):
    from polyreward.lm.model import LoraSettings

    def lora_trainer(run_dir, steps):
        torch.manual_seed(0)  # LoRA's initialization draws from the global generator
        model, tokenizer = load_policy(str(model_dir), lora=LoraSettings(rank=4, alpha=8))
        return Trainer(model, tokenizer, [says_yes, is_short], ROWS, tiny_config(run_dir, model_dir, steps=steps))

    straight = lora_trainer(tmp_path / "straight", 3)
    straight.train(progress=False)
    lora_trainer(tmp_path / "split", 1).train(progress=False)
    resumed = lora_trainer(tmp_path / "split", 3)
    resumed.train(resume=True, progress=False)
    for (name, a), (_, b) in zip(straight.model.named_parameters(), resumed.model.named_parameters(), strict=True):
        assert torch.equal(a, b), name
