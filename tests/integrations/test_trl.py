"""PolyrewardGRPOTrainer: TRL 1.16's real GRPOTrainer with polyreward reward sets and estimators.

Every trainer wraps a fresh ~3k-parameter random Llama with a word-level tokenizer, built offline.
Rewards that must give exact numbers read a fixed pattern by position (TRL lays out each prompt's G
completions consecutively), as the peer harness does; the others read the generated completions.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

pytest.importorskip("trl")

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

import polyreward as pr
from polyreward.integrations.trl import PolyrewardGRPOTrainer, token_turns
from polyreward.rewards import RewardComponent, RewardError, RewardSet, Step
from tests.tiny_models import micro_llama

G = 4  # completions per prompt; every generation batch is 2 prompts x G
WORDS = ["prompt", "a", "b", "c", "d", "e", "sep"]


def tiny_model_and_tokenizer():
    return micro_llama(WORDS)


def grpo_config(tmp_path, **overrides) -> GRPOConfig:
    settings = dict(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        fp16=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        seed=0,
        num_generations=G,
        per_device_train_batch_size=2 * G,
        max_completion_length=6,
        max_steps=2,
        learning_rate=0.05,
    )
    settings.update(overrides)
    with warnings.catch_warnings():  # transformers 5.x deprecation noise
        warnings.simplefilter("ignore", FutureWarning)
        return GRPOConfig(**settings)


def make_trainer(tmp_path, rewards, dataset, cls=PolyrewardGRPOTrainer, config=None, **kwargs):
    model, tokenizer = tiny_model_and_tokenizer()
    args = config or grpo_config(tmp_path)
    if args.beta != 0:  # TRL loads its reference model by name: save the tiny model and pass its path
        model.save_pretrained(tmp_path / "tiny")
        model = str(tmp_path / "tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if cls is GRPOTrainer:
            return cls(model=model, reward_funcs=rewards, args=args, train_dataset=dataset, processing_class=tokenizer)
        return cls(model, rewards, args=args, train_dataset=dataset, processing_class=tokenizer, **kwargs)


def train(trainer) -> dict[str, torch.Tensor]:
    """Two real optimizer steps; returns the parameters before training."""
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    return before


def assert_changed(trainer, before):
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[k], after[k].detach()) for k in before), "no parameter moved"


def pattern(*values):
    """A reward returning ``values`` for the G completions of every prompt, by position."""

    def reward(prompts, completions, **kwargs):
        return list(values) * (len(completions) // len(values))

    return reward


class Recorder:
    """Wraps ``GRPOTrainer._compute_loss`` (what each channel reaches) and counts forwards with gradient."""

    def __init__(self, monkeypatch):
        self.calls, self.forwards = [], 0
        loss_fn, forward_fn = GRPOTrainer._compute_loss, GRPOTrainer._get_per_token_logps_and_entropies

        def compute_loss(trainer, model, inputs):
            loss = loss_fn(trainer, model, inputs)
            mask = inputs["completion_mask"] * inputs.get("tool_mask", 1)
            self.calls.append(
                {k: inputs[k].detach().clone() for k in ("advantages", "completion_ids")}
                | {"mask": mask.clone(), "loss": loss.detach().clone(), "num_items": inputs["num_items_in_batch"]}
            )
            return loss

        def forward(trainer, *args, **kwargs):
            self.forwards += torch.is_grad_enabled()
            return forward_fn(trainer, *args, **kwargs)

        monkeypatch.setattr(GRPOTrainer, "_compute_loss", compute_loss)
        monkeypatch.setattr(GRPOTrainer, "_get_per_token_logps_and_entropies", forward)


def sorted_values(x):
    return torch.sort(x.flatten().float()).values


# ---------------------------------------------------------------------- (1) grpo / gdpo == TRL native
ROWS = [[1, 0.5], [0, None], [1, 1], [None, None], [0.3, 0.2], [0.9, None], [0.1, 0.7], [0.4, 0.4]]


def column(k):
    def reward(prompts, completions, row, **kwargs):
        return [r[k] for r in row]

    reward.__name__ = f"r{k}"
    return reward


@pytest.mark.parametrize(
    ("estimator", "params", "aggregation", "scale"),
    [
        ("grpo", {}, "sum_then_normalize", "group"),
        ("grpo", {"scale": "batch"}, "sum_then_normalize", "batch"),
        ("grpo", {"scale": "none"}, "sum_then_normalize", "none"),
        ("gdpo", {}, "normalize_then_sum", "group"),
    ],
)
def test_advantages_equal_trl_native(tmp_path, estimator, params, aggregation, scale):
    dataset = Dataset.from_dict({"prompt": ["prompt a", "prompt b"], "row": [[0, 0], [0, 0]]})
    native = make_trainer(
        tmp_path,
        [column(0), column(1)],
        dataset,
        cls=GRPOTrainer,
        config=grpo_config(
            tmp_path, multi_objective_aggregation=aggregation, scale_rewards=scale, reward_weights=[1.0, 0.5]
        ),
    )
    rewards = RewardSet([column(0), RewardComponent(column(1), weight=0.5)])
    ours = make_trainer(tmp_path, rewards, dataset, estimator=estimator, estimator_params=params)
    advantages = []
    for trainer in (native, ours):
        trainer.model.train()
        inputs = [{"prompt": ["prompt a", "prompt b"][i // G], "row": row} for i, row in enumerate(ROWS)]
        logging.getLogger("trl.trainer.grpo_trainer").setLevel(logging.ERROR)  # the all-None row warns
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            advantages.append(trainer._generate_and_score_completions(inputs)["advantages"])
    torch.testing.assert_close(advantages[1], advantages[0], atol=1e-5, rtol=1e-5)
    assert advantages[1][3] == 0  # the row where no reward applies
    assert torch.isnan(ours.reward_batch.rewards).sum() == 4


# ---------------------------------------------------------------------- (2) behaviour TRL lacks, real .train()
def hdpo_trainer(tmp_path, tool_pattern, **config):
    totals = []

    class Totals(PolyrewardGRPOTrainer):
        def _compute_loss(self, model, inputs):
            loss = super()._compute_loss(model, inputs)
            totals.append(loss.detach().clone())
            return loss

    answer = RewardComponent(pattern(1, 1, 1, 0), name="answer")
    tool = RewardComponent(pattern(*tool_pattern), name="tool")
    dataset = Dataset.from_dict({"prompt": ["prompt a", "prompt b"]})
    trainer = make_trainer(
        tmp_path,
        RewardSet([answer, tool]),
        dataset,
        cls=Totals,
        config=grpo_config(tmp_path, **config),
        estimator="hdpo",
        estimator_params={"conditional_weight": 0.15},
    )
    return trainer, totals


@pytest.mark.parametrize(("loss_type", "beta"), [("grpo", 0.0), ("dapo", 0.1)])
def test_hdpo_trains_one_clipped_loss_per_channel(tmp_path, monkeypatch, loss_type, beta):
    recorder = Recorder(monkeypatch)
    trainer, totals = hdpo_trainer(tmp_path, (1, 1 / 3, 0.5, 0), loss_type=loss_type, beta=beta)
    assert_changed(trainer, train(trainer))

    primary, conditional = recorder.calls[0::2], recorder.calls[1::2]
    assert len(primary) == len(conditional) == 2 and recorder.forwards == 2  # one forward serves both channels
    sequence_mean = 8 / 6 if loss_type == "grpo" else 1.0  # TRL's grpo loss averages over the 8 rows, HDPO over 6
    for p, c, total in zip(primary, conditional, totals, strict=True):
        torch.testing.assert_close(sorted_values(p["advantages"]), torch.tensor([-1.5] * 2 + [0.5] * 6), atol=1e-4, rtol=0)
        # the conditional channel reaches the loss only for the 3 qualifying (tool > 0) samples of each prompt
        covered = c["mask"].sum(-1) > 0
        assert torch.equal(covered, c["advantages"] != 0) and int(covered.sum()) == 6
        expected = torch.tensor([1.1209, -0.8006, -0.3203] * 2)
        torch.testing.assert_close(sorted_values(c["advantages"][covered]), sorted_values(expected), atol=1e-3, rtol=0)
        assert c["num_items"] == c["mask"].sum()  # token-level loss types normalize by the channel's own tokens
        torch.testing.assert_close(total, p["loss"] + 0.15 * sequence_mean * c["loss"])
        if loss_type == "dapo":  # on-policy the surrogate is -A per token: a token mean over the covered samples
            on_policy = -(c["advantages"][:, None] * c["mask"]).sum() / c["mask"].sum()
            torch.testing.assert_close(c["loss"], on_policy)
    logged = trainer.state.log_history[0]
    assert logged["diag/hdpo/qualifying_fraction"] == 0.75
    assert "channel/conditional/clip_ratio/region_mean" in logged and "entropy" in logged
    assert all(v is not None for k, v in logged.items() if k.startswith("channel/"))
    if beta:  # the KL is counted once, in the first channel (it is 0 at step 1, where the policy is the reference)
        assert trainer.state.log_history[1]["kl"] > 0
        assert [h["channel/conditional/kl"] for h in trainer.state.log_history[:2]] == [0.0, 0.0]


def test_hdpo_channel_without_qualifying_samples_adds_nothing(tmp_path, monkeypatch):
    recorder = Recorder(monkeypatch)
    trainer, totals = hdpo_trainer(tmp_path, (1, 0, 0, 0), max_steps=1)  # one qualifying sample per prompt: no pair
    assert_changed(trainer, train(trainer))
    primary, conditional = recorder.calls
    assert conditional["mask"].sum() == 0 and conditional["loss"] == 0
    torch.testing.assert_close(totals[0], primary["loss"])


def hbpo_reward(prompts, completions, completion_ids, budget, **kwargs):
    correct = [1, 1, 0, 1] * (len(completions) // G)
    n = [len(ids) for ids in completion_ids]
    return pr.rewards.hbpo_reward(n, budget, correct, max_length=6).tolist()


def test_hbpo_budgets_from_dataset_column_shape_the_advantages(tmp_path, monkeypatch):
    recorder = Recorder(monkeypatch)
    dataset = Dataset.from_dict({"prompt": ["prompt a", "prompt b"], "budget": [2, 5]})
    rewards = RewardSet([RewardComponent(hbpo_reward, name="hbpo")])
    trainer = make_trainer(tmp_path, rewards, dataset, estimator="hbpo", estimator_params={"max_length": 6})
    assert_changed(trainer, train(trainer))

    batch, result = trainer.reward_batch, trainer.advantage_result
    assert sorted(batch.budgets.view(2, G)[:, 0].tolist()) == [2.0, 5.0]
    assert (batch.budgets.view(2, G) == batch.budgets.view(2, G)[:, :1]).all()  # one budget per prompt group
    torch.testing.assert_close(sorted_values(recorder.calls[-1]["advantages"]), sorted_values(result.advantages))
    grpo = pr.advantages.compute("grpo", batch, eps=1e-6).advantages
    assert (result.advantages - grpo).abs().min() > 0.1  # the budget term moves every sample
    same_budget = dataclasses.replace(batch, budgets=torch.full_like(batch.budgets, 5.0))
    assert not torch.allclose(pr.advantages.compute("hbpo", same_budget, max_length=6).advantages, result.advantages)


def turn_reward(prompts, completions, turns, **kwargs):
    return [[float("a" in turn.split()) + 0.1 * len(turn.split()) for turn in sample] for sample in turns]


def turn_count(prompts, completions, turns, **kwargs):
    return [float(len(t)) for t in turns]


def test_dual_level_turn_advantages_reach_their_tokens(tmp_path, monkeypatch):
    recorder = Recorder(monkeypatch)
    dataset = Dataset.from_dict({"prompt": ["prompt a", "prompt b"]})
    rewards = RewardSet([turn_count])
    trainer = make_trainer(tmp_path, rewards, dataset, estimator="dual_level", turn_reward=turn_reward, turn_separator="sep")
    assert_changed(trainer, train(trainer))

    sep = trainer.separator_id
    result, call = trainer.advantage_result, recorder.calls[-1]
    assert call["advantages"].shape == call["completion_ids"].shape  # per token, not per sample
    seen = []
    for ids, adv, mask in zip(call["completion_ids"], call["advantages"], call["mask"], strict=True):
        real = mask.bool()
        turn_of = torch.tensor(token_turns(ids[real].tolist(), None, sep))
        values = [adv[real][turn_of == t] for t in range(int(turn_of.max()) + 1)]
        assert all(torch.all(v == v[0]) for v in values)  # one value per turn, on every token of the turn
        seen.append(tuple(round(float(v[0]), 4) for v in values))
    expected = [tuple(round(float(a), 4) for a in row[m]) for row, m in zip(result.advantages, result.mask, strict=True)]
    assert sorted(seen) == sorted(expected)
    assert any(len(set(s)) > 1 for s in seen)  # some completion has turns with different advantages


# ---------------------------------------------------------------------- (3) failure policies, (4) schedules
def fails_on_flagged(prompts, completions, fail, **kwargs):
    if any(fail):
        raise ValueError("flagged sample")
    return [1.0] * len(completions)


def test_abstain_is_nan_and_counted_and_schedule_changes_weights(tmp_path):
    dataset = Dataset.from_dict({"prompt": ["prompt a", "prompt b"], "fail": [True, False]})
    rewards = RewardSet(
        [
            RewardComponent(pattern(1, 0, 1, 0), name="correct", weight=Step(boundaries=(1,), values=(1.0, 3.0))),
            RewardComponent(fails_on_flagged, name="flaky", on_error="abstain"),
        ]
    )
    trainer = make_trainer(tmp_path, rewards, dataset)
    assert_changed(trainer, train(trainer))

    step1, step2 = trainer.state.log_history[:2]
    assert step1["reward/flaky/abstained"] == step2["reward/flaky/abstained"] == 4.0
    assert step1["rewards/flaky/mean"] == 1.0  # TRL's own metric, over the samples that did not abstain
    assert int(torch.isnan(trainer.reward_batch["flaky"]).sum()) == 4
    assert (step1["reward/correct/weight"], step2["reward/correct/weight"]) == (1.0, 3.0)
    assert trainer.reward_batch.weights.tolist() == [3.0, 1.0]
    assert trainer.reward_weights.tolist() == [3.0, 1.0]  # TRL's logged `reward` uses this step's weights
    assert step2["reward"] == pytest.approx(3.0 * 0.5 + 1.0 * 0.5, abs=1e-6)  # nansum: abstained rows add 0


def test_raise_policy_stops_training_naming_reward_and_sample(tmp_path):
    dataset = Dataset.from_dict({"prompt": ["prompt a", "prompt b"], "fail": [True, False]})
    trainer = make_trainer(tmp_path, RewardSet([RewardComponent(fails_on_flagged, name="strict")]), dataset)
    with pytest.raises(RewardError, match=r"reward 'strict' failed on sample [04]: ValueError: flagged sample \(and 3 more"):
        train(trainer)


# ---------------------------------------------------------------------- configuration errors and turn splitting
def test_configuration_errors_name_the_problem(tmp_path):
    dataset = Dataset.from_dict({"prompt": ["prompt a", "prompt b"]})
    rewards = RewardSet([pattern(1, 0, 1, 0)])
    with pytest.raises(TypeError, match=r"estimator 'gdpo' has no parameter\(s\) \['scale'\]"):
        make_trainer(tmp_path, rewards, dataset, estimator="gdpo", estimator_params={"scale": "batch"})
    with pytest.raises(KeyError, match="unknown advantage estimator 'gpro'"):
        make_trainer(tmp_path, rewards, dataset, estimator="gpro")
    with pytest.raises(ValueError, match="not in GRPOConfig.reward_weights"):
        make_trainer(tmp_path, rewards, dataset, config=grpo_config(tmp_path, reward_weights=[1.0]))


def test_token_turns_follow_tool_output_and_separators():
    assert token_turns([5, 9, 6, 7, 8], [1, 1, 1, 0, 1], 9) == [0, 0, 1, -1, 2]
    assert token_turns([5, 6, 7], None, None) == [0, 0, 0]
    assert token_turns([9, 9, 5], [1, 1, 1], 9) == [0, 1, 2]
