"""BMAS, OT alignment, VLM-RM goal-baseline and MiniLM sentence rewards."""

import itertools
from typing import ClassVar

import numpy as np
import pytest
import torch

from polyreward.rewards._columns import RewardInputError
from polyreward.rewards.similarity import (
    bmas,
    bmas_reward,
    clip_goal_baseline_reward,
    embed_sentences,
    goal_baseline_reward,
    minilm_encoder,
    ot_alignment,
    ot_alignment_reward,
    prompt_mean,
    sentence_similarity_reward,
    split_sentences,
)


# ---------------------------------------------------------------------------------------------- BMAS
def test_bmas_spec():
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # P = {(1,0), (0,1), (1,1)}, Q = {(1,0), (1,1)}: fwd = (1 + .7071 + 1) / 3 = .9024, bwd = 1
    assert bmas([0, 1, 2], [0, 2], emb) == pytest.approx(0.9512, abs=1e-4)
    assert bmas([0, 2], [0, 2], emb) == pytest.approx(1.0)
    assert bmas([], [0], emb) == 0.0


def test_bmas_against_loops():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50, 8))
    for _ in range(20):
        pred, gt = rng.integers(0, 50, size=rng.integers(1, 9)), rng.integers(0, 50, size=rng.integers(1, 9))
        unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        cos = [[float(unit[i] @ unit[j]) for j in gt] for i in pred]
        fwd = np.mean([max(row) for row in cos])
        bwd = np.mean([max(cos[i][j] for i in range(len(pred))) for j in range(len(gt))])
        assert bmas(pred.tolist(), gt.tolist(), torch.tensor(emb)) == pytest.approx((fwd + bwd) / 2)


class WordTokenizer:
    """A toy tokenizer: one id per known word."""

    vocab: ClassVar[dict[str, int]] = {"the": 0, "cat": 1, "sat": 2, "dog": 3, "ran": 4}

    def encode(self, text):
        return [self.vocab[w] for w in text.lower().split() if w in self.vocab]


def test_bmas_reward_batched():
    emb = torch.eye(5)
    fn = bmas_reward(emb, WordTokenizer(), tag="answer")
    out = fn(
        [""] * 4,
        ["<answer>the cat sat</answer>", "<answer>the dog</answer>", "no tag", "x"],
        solution=["the cat sat", "the cat", "the cat", None],
    )
    # one-hot embeddings: [the, dog] vs [the, cat] -> fwd (1 + 0) / 2, bwd (1 + 0) / 2
    assert out == [pytest.approx(1.0), pytest.approx(0.5), 0.0, None]
    callable_tok = bmas_reward(emb, WordTokenizer().encode, name="bmas_fn")
    assert callable_tok([""], ["the cat"], solution=["the cat"]) == [pytest.approx(1.0)]
    with pytest.raises(RewardInputError, match="sample 0, column 'solution'"):
        fn([""], ["x"], solution=[["the"]])


# ---------------------------------------------------------------------------------------------- OT
def test_ot_alignment_emd_against_permutations():
    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 4):
        for _ in range(5):
            a, b = rng.normal(size=(n, 6)), rng.normal(size=(n, 6))
            ua, ub = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b))
            cos = ua @ ub.T
            best = max(cos[np.arange(n), list(p)].mean() for p in itertools.permutations(range(n)))
            assert ot_alignment(a, b) == pytest.approx(best)  # Birkhoff: uniform OT picks a permutation


def test_ot_alignment_properties():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(3, 5)), rng.normal(size=(4, 5))
    assert ot_alignment(a, a[[2, 0, 1]]) == pytest.approx(1.0)
    exact = ot_alignment(a, b)
    gaps = [exact - ot_alignment(a, b, "sinkhorn", reg=reg) for reg in (0.2, 0.05, 0.01)]
    assert gaps[0] > gaps[1] > gaps[2] >= 0  # entropic plans approach the exact one from below
    assert gaps[2] < 1e-3
    assert ot_alignment(a, b, "sinkhorn", reg=10.0) == pytest.approx(
        (a / np.linalg.norm(a, axis=1, keepdims=True)).mean(0) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).mean(0),
        abs=1e-2,
    )  # very high entropy: the plan tends to the product of the marginals
    assert ot_alignment(np.zeros((0, 5)), b) == 0.0
    # weights: all mass on one piece of each side gives their cosine
    w = ot_alignment(a, b, pred_weights=[0, 1, 0], ref_weights=[0, 0, 0, 1])
    assert w == pytest.approx(a[1] @ b[3] / np.linalg.norm(a[1]) / np.linalg.norm(b[3]))
    with pytest.raises(ValueError, match="method"):
        ot_alignment(a, b, method="gw")


def test_ot_alignment_reward_token_unit():
    fn = ot_alignment_reward(unit="token", embedding=torch.eye(5), tokenizer=WordTokenizer(), name="ot_tokens")
    out = fn([""] * 3, ["the cat sat", "sat cat the", ""], solution=["the cat sat", "the cat sat", "the cat"])
    assert out == [pytest.approx(1.0), pytest.approx(1.0), 0.0]  # OT ignores order; empty scores 0
    with pytest.raises(ValueError, match="needs embedding"):
        ot_alignment_reward(unit="token")


def test_split_sentences():
    assert split_sentences("One. Two!  Three?\nFour") == ["One.", "Two!", "Three?", "Four"]
    assert split_sentences("  ") == []


# ---------------------------------------------------------------------------------------------- VLM-RM
@pytest.mark.parametrize(("alpha", "expected"), [(0.0, 0.60), (0.5, 0.63), (1.0, 0.64)])
def test_goal_baseline_spec(alpha, expected):
    r = clip_goal_baseline_reward(torch.tensor([[0.6, 0.8]]), torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), alpha)
    assert r.shape == (1,)
    assert float(r[0]) == pytest.approx(expected)


def test_goal_baseline_matches_direct_formula():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 4))
    t, b = prompt_mean(rng.normal(size=(3, 4))).numpy(), prompt_mean(rng.normal(size=(2, 4))).numpy()
    for alpha in (0.0, 0.3, 1.0):
        d = t - b
        proj = alpha * np.outer(d, d) / (d @ d) + (1 - alpha) * np.eye(4)
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        expected = [1 - np.linalg.norm((row - t) @ proj) ** 2 / 2 for row in xn]
        assert clip_goal_baseline_reward(x, t, b, alpha).tolist() == pytest.approx(expected)
    unit_t = t / np.linalg.norm(t)
    assert clip_goal_baseline_reward(x, unit_t, b, 0.0).tolist() == pytest.approx((xn @ unit_t).tolist())  # cosine
    with pytest.raises(ValueError, match="coincide"):
        clip_goal_baseline_reward(x, t, t, 0.5)


def test_goal_baseline_reward_with_custom_encoder():
    def encode(texts):
        return torch.tensor([[1.0, 0.0] if "goal" in s else [0.0, 1.0] if "base" in s else [0.6, 0.8] for s in texts])

    fn = goal_baseline_reward(["goal"], ["base"], alpha=0.5, encoder=encode)
    assert fn([""] * 3, ["reached the goal", "at base", "between"]) == pytest.approx([1.0, 0.0, 0.63])


# ---------------------------------------------------------------------------------------------- MiniLM
@pytest.fixture(scope="module")
def minilm():
    return minilm_encoder()


def test_minilm_embeddings(minilm):
    assert minilm_encoder() is minilm  # loaded once per process
    emb = embed_sentences(["A cat sits on the mat.", "A cat sits on the mat.", "Quarterly revenue grew."])
    assert emb.shape == (3, 384)
    assert emb.norm(dim=1).tolist() == pytest.approx([1.0] * 3, abs=1e-5)
    assert float(emb[0] @ emb[1]) == pytest.approx(1.0, abs=1e-5)


def test_sentence_rewards_rank_paraphrases_first(minilm):
    ref = "A cat is sitting on a mat."
    completions = ["The cat sat on the mat.", "Stock prices fell sharply today.", "<answer>The cat sat on the mat.</answer>"]
    cos = sentence_similarity_reward()([""] * 4, [*completions, "x"], solution=[ref, ref, ref, None])
    assert cos[0] > 0.7 > 0.2 > cos[1]
    assert cos[3] is None
    tagged = sentence_similarity_reward(tag="answer", name="answer_similarity")([""], [completions[2]], solution=[ref])
    assert tagged == [pytest.approx(cos[0], abs=1e-5)]
    ot_scores = ot_alignment_reward()(
        [""] * 2, ["The cat sat. It purred.", "Stocks fell. Bonds rose."], solution=["It purred. A cat sat down."] * 2
    )
    assert ot_scores[0] > ot_scores[1]
    goal = goal_baseline_reward(["a sentence about cats"], ["a sentence"], alpha=0.5)
    scores = goal([""] * 2, ["My cat loves sleeping.", "The train was late."])
    assert scores[0] > scores[1]
