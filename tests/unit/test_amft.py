"""AMFT (arXiv 2508.06944): SFT loss, μ meta-gradient, entropy rule, controller state and config errors."""

import dataclasses

import pytest
import torch

from polyreward.lm.amft import AMFT, entropy_gap, mu_meta_gradient, next_mu
from polyreward.lm.controllers import LossMix, build_controllers
from polyreward.lm.loss import loss_normalizer, sft_token_loss
from polyreward.lm.rollout import demonstration_rollout

LOGP = torch.tensor([[-1.0, -2.0, -9.0], [-0.5, -9.0, -9.0]], dtype=torch.float64)
MASK = torch.tensor([[True, True, False], [True, False, False]])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("token-mean", 3.5 / 3),  # (1 + 2 + 0.5) / 3 tokens
        ("seq-mean-token-sum", 3.5 / 2),  # token sums 3 and 0.5, over 2 sequences
        ("seq-mean-token-mean", (1.5 + 0.5) / 2),  # token means 1.5 and 0.5
        ("constant", 3.5 / (2 * 4)),  # Dr.GRPO: sequences * max_tokens (4)
    ],
)
def test_sft_loss_by_hand_and_split_into_micro_batches(mode, expected):
    norm = loss_normalizer(MASK, mode, max_tokens=4)
    assert float(sft_token_loss(LOGP, MASK, mode, norm)) == pytest.approx(expected)
    parts = sum(float(sft_token_loss(LOGP[i : i + 1], MASK[i : i + 1], mode, norm)) for i in range(2))
    assert parts == pytest.approx(expected)


def test_meta_gradient_by_hand():
    # -lr * <val, sft - rl> = -0.1 * <(1, 0), (2, -1)> = -0.2
    val, sft, rl = torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0]), torch.tensor([1.0, 1.0])
    assert mu_meta_gradient(val, sft, rl, 0.1) == pytest.approx(-0.2)
    assert mu_meta_gradient(torch.tensor([1.0, 2.0]), sft, rl, 0.1) == pytest.approx(0.0)


def _losses():
    gen = torch.Generator().manual_seed(0)
    data = {
        k: (torch.randn(6, 3, generator=gen, dtype=torch.float64), torch.randn(6, generator=gen, dtype=torch.float64))
        for k in ("rl", "sft", "val")
    }

    def loss(name, w):
        x, y = data[name]
        return ((x @ w - y) ** 2).mean()

    return loss, torch.randn(3, generator=gen, dtype=torch.float64)


def test_meta_gradient_matches_autograd_through_one_sgd_step():
    """A tiny linear model: ``dL_val(θ')/dμ`` by autograd through ``θ' = θ − α((1−μ)g_RL + μ g_SFT)``
    equals the formula with ∇L_val at θ' exactly, and the first-order one (∇L_val at θ) to O(α)."""
    loss, w0 = _losses()
    w = w0.clone().requires_grad_(True)
    g_rl = torch.autograd.grad(loss("rl", w), w)[0]
    g_sft = torch.autograd.grad(loss("sft", w), w)[0]
    g_val = torch.autograd.grad(loss("val", w), w)[0]
    for lr in (0.1, 0.01):
        mu = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
        w_next = w0 - lr * ((1 - mu) * g_rl + mu * g_sft)
        exact = float(torch.autograd.grad(loss("val", w_next), mu)[0])
        w_at = w_next.detach().requires_grad_(True)
        g_val_next = torch.autograd.grad(loss("val", w_at), w_at)[0]
        assert mu_meta_gradient(g_val_next, g_sft, g_rl, lr) == pytest.approx(exact, rel=1e-12)
        first_order = mu_meta_gradient(g_val, g_sft, g_rl, lr)
        assert first_order == pytest.approx(exact, rel=5 * lr)
        # and a central finite difference in μ agrees
        h = 1e-6
        fd = (
            loss("val", w0 - lr * ((0.7 - h) * g_rl + (0.3 + h) * g_sft))
            - loss("val", w0 - lr * ((0.7 + h) * g_rl + (0.3 - h) * g_sft))
        ) / (2 * h)
        assert float(fd) == pytest.approx(exact, rel=1e-6)


def test_next_mu_descends_adds_entropy_drive_and_clips():
    # descent: a positive dL_val/dμ lowers μ
    assert next_mu(0.5, 2.0, 0.0, 0.1, 0.0, 0.05, 0.95) == pytest.approx(0.3)
    # entropy below the target (gap > 0) raises μ: 0.5 + 0.5 * (1.0 - 0.6)
    assert entropy_gap(1.0, 0.6) == pytest.approx(0.4)
    assert next_mu(0.5, 0.0, entropy_gap(1.0, 0.6), 0.0, 0.5, 0.05, 0.95) == pytest.approx(0.7)
    assert next_mu(0.9, -100.0, 0.0, 1.0, 0.0, 0.05, 0.95) == 0.95
    assert next_mu(0.1, 100.0, 0.0, 1.0, 0.0, 0.05, 0.95) == 0.05


@dataclasses.dataclass
class _Data:
    rows: list
    prompt_column: str = "prompt"


ROWS = [{"prompt": f"q{i}", "answer": str(i)} for i in range(5)]


def _inputs(rl_entropy=1.0, sft_entropy=2.0, epoch=0, val=None):
    g = torch.tensor([1.0, 0.0])
    return LossMix(g, torch.tensor([0.0, 1.0]), val, 0.5, rl_entropy, sft_entropy, epoch)


def test_controller_warmup_target_entropy_and_state():
    c = AMFT(demonstration="<answer>{answer}</answer>", warmup_steps=1, meta_every=2, entropy_lr=0.1, validation_rows=2)
    c.bind(None, _Data(ROWS), seed=0)
    c.observe(0, None, [0, 1], ROWS[:2], [])
    term = c.supervised(0)
    assert term.prompts == ["q0", "q1"] and term.targets == ["<answer>0</answer>", "<answer>1</answer>"]
    assert term.validation is None  # warm-up
    assert c.mix(0, _inputs()) == (0.0, 1.0, {"amft/mu": 1.0, "amft/warmup": 1.0})
    assert c.supervised(1).validation is not None and len(c.supervised(1).validation[0]) == 2
    assert c.supervised(2).validation is None and c.supervised(3).validation is not None
    # step 1: target = the SFT entropy 2.0; rollouts at 1.0 -> gap 1.0; no validation gradient -> no meta term
    rl_w, sft_w, metrics = c.mix(1, _inputs())
    assert sft_w == pytest.approx(0.8 + 0.1 * 1.0) and rl_w == pytest.approx(1 - sft_w)
    assert metrics["amft/target_entropy"] == 2.0 and metrics["amft/entropy_gap"] == 1.0
    assert c.mix(1, _inputs(epoch=1))[1] == pytest.approx(0.9)  # a second epoch does not move μ
    # with a validation gradient: dL/dμ = -0.5 * <(0, 2), (0,1) - (1,0)> = -1.0 -> μ += 1e-4; entropy gap 0
    c.mix(3, _inputs(rl_entropy=2.0, val=torch.tensor([0.0, 2.0])))
    assert c.mu == pytest.approx(0.9 + 1e-4)
    state = c.state_dict()
    fresh = AMFT(demonstration="<answer>{answer}</answer>")
    fresh.load_state_dict(state)
    assert (fresh.mu, fresh.entropy_target) == (c.mu, 2.0)


def test_bind_names_a_missing_demonstration_column():
    with pytest.raises(ValueError, match=r"amft.demonstration: row 0 has no column 'demonstration'"):
        AMFT().bind(None, _Data(ROWS), seed=0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"mu_min": 0.9, "mu_max": 0.1}, "mu_min, mu_max: need 0 <= mu_min <= mu_max <= 1"),
        ({"mu_init": 0.99}, r"mu_init: must lie in \[mu_min, mu_max\]"),
        ({"meta_every": 0}, "meta_every: must be >= 1"),
        ({"entropy_lr": -1.0}, "entropy_lr: must be >= 0"),
        ({"validation_rows": 0}, "validation_rows: must be >= 1"),
        ({"target_entropy": -0.5}, "target_entropy: must be >= 0"),
        ({"demonstration": ""}, "demonstration: a non-empty format string"),
        ({"mu": 0.5}, r"unknown params \['mu'\]"),
    ],
)
def test_config_errors_name_the_field(params, message):
    with pytest.raises(ValueError, match=r"controllers\[0\] \(amft\): " + message):
        build_controllers([{"kind": "amft", "params": params}])


def test_demonstration_rollout_appends_eos_and_pads_right():
    from tests.tiny_models import word_tokenizer

    tok = word_tokenizer(
        ["say", "yes", "no", "please", "answer"],
        chat_template="{% for m in messages %}{{ m['content'] }} {% endfor %}answer ",
    )
    demos = demonstration_rollout(tok, ["say yes please", "say no"], ["yes", "no no"])
    yes, no, eos, pad = (tok.convert_tokens_to_ids(w) for w in ("yes", "no", "</s>", "<pad>"))
    assert demos.completion_ids.tolist() == [[yes, eos, pad], [no, no, eos]]
    assert demos.completion_mask.tolist() == [[True, True, False], [True, True, True]]
    assert demos.group_size == 1 and demos.prompt_mask[0].sum() < demos.prompt_ids.shape[1] + 1
    with pytest.raises(ValueError, match="one target per prompt"):
        demonstration_rollout(tok, ["say yes"], [])
