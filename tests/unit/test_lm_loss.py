import math

import pytest
import torch

from polyreward.lm.loss import (
    clipped_surrogate,
    kl_k3,
    loss_normalizer,
    reduce_tokens,
    token_entropy,
    token_logprobs,
)


def test_token_logprobs_equals_log_softmax_gather():
    logits = torch.randn(2, 3, 7, dtype=torch.float64)
    tokens = torch.randint(0, 7, (2, 3))
    expected = torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]
    torch.testing.assert_close(token_logprobs(logits, tokens), expected)


def test_entropy_of_uniform_is_log_v():
    assert token_entropy(torch.zeros(1, 1, 8)).item() == pytest.approx(math.log(8))


def test_clipped_surrogate_by_hand():
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))  # ratios 1.5, 0.5, 1.1 (old logp = 0)
    old = torch.zeros(1, 3)
    # positive advantage: ratio 1.5 clipped at 1 + 0.28; ratio 0.5 not clipped (min side only for A<0)
    loss, clipped = clipped_surrogate(logp, old, torch.tensor([2.0]), clip_low=0.2, clip_high=0.28)
    torch.testing.assert_close(loss, torch.tensor([[-2 * 1.28, -2 * 0.5, -2 * 1.1]]))
    assert clipped.tolist() == [[1.0, 0.0, 0.0]]
    # negative advantage: ratio 0.5 clipped at 0.8 -> loss = -(-1) * 0.8
    loss, clipped = clipped_surrogate(logp, old, torch.tensor([-1.0]), clip_low=0.2, clip_high=0.28)
    torch.testing.assert_close(loss, torch.tensor([[1.5, 0.8, 1.1]]))
    assert clipped.tolist() == [[0.0, 1.0, 0.0]]


def test_kl_k3_zero_at_equal_and_positive_otherwise():
    logp = torch.tensor([[-1.0, -2.0]])
    assert kl_k3(logp, logp).abs().max() == 0
    d = 0.5
    assert kl_k3(torch.tensor([[0.0]]), torch.tensor([[d]])).item() == pytest.approx(math.exp(d) - d - 1)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "constant"])
def test_micro_batches_sum_to_the_full_batch_reduction(mode):
    values = torch.randn(8, 5, dtype=torch.float64)
    mask = torch.rand(8, 5) > 0.3
    mask[:, 0] = True
    norm = loss_normalizer(mask, mode, max_tokens=5)
    full = reduce_tokens(values, mask, mode, norm)
    split = sum(reduce_tokens(values[i : i + 1], mask[i : i + 1], mode, norm) for i in range(8))
    torch.testing.assert_close(split, full)


def test_reductions_by_hand():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    assert reduce_tokens(values, mask, "token-mean", loss_normalizer(mask, "token-mean")).item() == 2.5
    assert reduce_tokens(values, mask, "seq-mean-token-sum", loss_normalizer(mask, "seq-mean-token-sum")).item() == 5.0
    assert reduce_tokens(values, mask, "seq-mean-token-mean", loss_normalizer(mask, "seq-mean-token-mean")).item() == 3.0
    assert reduce_tokens(values, mask, "constant", loss_normalizer(mask, "constant", max_tokens=4)).item() == 10 / 8
    with pytest.raises(ValueError, match="needs max_tokens"):
        loss_normalizer(mask, "constant")


def test_sequence_normalizers_count_only_covered_sequences():
    """HDPO's conditional channel covers some rows only: sequence means average over those rows."""
    mask = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=torch.bool)
    assert loss_normalizer(mask, "seq-mean-token-sum") == 2.0
    assert loss_normalizer(mask, "constant", max_tokens=3) == 6.0
    assert loss_normalizer(mask, "token-mean") == 3.0
