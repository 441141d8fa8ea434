import pytest
import torch

import polyreward as pr
from polyreward import advantages

REQUIRED = {
    "grpo",
    "dr_grpo",
    "rloo",
    "reinforce_pp",
    "gdpo",
    "hdpo",
    "hbpo",
    "dual_level",
    "directional",
    "gae",
    "multi_critic",
}


def test_every_required_estimator_is_registered():
    assert set(advantages.names()) >= REQUIRED


def test_unknown_estimator_suggests_close_names():
    batch = pr.RewardBatch(rewards=[[1.0]], names=["a"])
    with pytest.raises(KeyError, match=r"unknown advantage estimator 'gpdo'.*did you mean \[.*'gdpo'"):
        advantages.compute("gpdo", batch)


def test_unknown_parameter_and_bad_choice_are_errors_naming_the_allowed():
    batch = pr.RewardBatch(rewards=[[1.0], [0.0]], names=["a"])
    with pytest.raises(TypeError, match=r"'grpo' has no parameter 'scal'; allowed: \['eps', 'scale'\]"):
        advantages.compute("grpo", batch, scal="group")
    with pytest.raises(ValueError, match=r"scale='sequence' is not one of \['group', 'batch', 'none'\]"):
        advantages.compute("grpo", batch, scale="sequence")
    with pytest.raises(ValueError, match=r"batch_norm='seq' is not one of \['sequence', 'token', None\]"):
        advantages.compute("gdpo", batch, batch_norm="seq")


def test_missing_structure_is_an_error_naming_the_field():
    batch = pr.RewardBatch(rewards=[[1.0], [0.0]], names=["a"])
    with pytest.raises(ValueError, match="hbpo: needs RewardBatch.budgets"):
        advantages.compute("hbpo", batch)
    with pytest.raises(ValueError, match="dual_level: needs RewardBatch.turn_rewards"):
        advantages.compute("dual_level", batch)
    with pytest.raises(ValueError, match="gdpo: batch_norm='token' needs RewardBatch.response_mask"):
        advantages.compute("gdpo", batch, batch_norm="token")
    with pytest.raises(ValueError, match="multi_critic: needs a step batch"):
        advantages.compute("multi_critic", batch, values=torch.zeros(3, 1, 1))
    with pytest.raises(ValueError, match="hdpo: needs a primary and a conditional reward"):
        advantages.compute("hdpo", batch)
    with pytest.raises(ValueError, match="exactly one of direction"):
        advantages.compute("directional", batch)
    with pytest.raises(TypeError, match="expected a RewardBatch"):
        advantages.compute("grpo", [[1.0]])


def test_register_a_custom_estimator_and_call_it_the_same_way():
    @advantages.register("test_centred_sum")
    def centred(batch, *, shift: float = 0.0):
        scores = batch.weighted_sum()
        return advantages.AdvantageResult(advantages=scores - scores.mean() + shift)

    batch = pr.RewardBatch(rewards=[[1.0], [3.0]], names=["a"])
    assert advantages.compute("test_centred_sum", batch, shift=1.0).advantages.tolist() == [0.0, 2.0]
    with pytest.raises(ValueError, match="already registered"):
        advantages.register("test_centred_sum")(centred)
    with pytest.raises(TypeError, match="must be keyword-only"):
        advantages.register("test_positional")(lambda batch, scale=1.0: None)


def test_single_channel_result_exposes_its_channel():
    batch = pr.RewardBatch(rewards=[[1.0], [0.0]], names=["a"])
    result = advantages.compute("grpo", batch)
    assert set(result.channels) == {"advantage"} and result.channel_weights == {"advantage": 1.0}


def test_token_batch_norm_weights_samples_by_length():
    """Token whitening of broadcast advantages = sample statistics weighted by token counts."""
    rewards = [[1.0], [0.0], [0.0], [1.0]]
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    batch = pr.RewardBatch(rewards=rewards, names=["a"], group_ids=[0, 0, 1, 1], response_mask=mask)
    pre = advantages.compute("gdpo", batch, batch_norm=None).advantages
    tokens = pre[:, None].expand_as(mask)[mask]  # every response token carries its sample's advantage
    expected = (pre - tokens.mean()) / (tokens.std() + 1e-4)
    torch.testing.assert_close(advantages.compute("gdpo", batch, batch_norm="token").advantages, expected)
