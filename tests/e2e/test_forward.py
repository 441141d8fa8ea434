"""The shared-prompt forward equals running every row's prompt + completion separately (values and gradients)."""

import torch

from polyreward.lm.forward import completion_logits
from polyreward.lm.model import load_policy
from polyreward.lm.rollout import encode_prompts, left_pad, positions, sample_group

from .tiny_lm import make_chatml_model


def _plain_logits(model, prompt_ids, prompt_mask, completion_ids, completion_mask):
    ids = torch.cat([prompt_ids, completion_ids], 1)
    attn = torch.cat([prompt_mask, completion_mask], 1)
    out = model(input_ids=ids, attention_mask=attn, position_ids=positions(attn))
    return out.logits[:, prompt_ids.shape[1] - 1 : -1].float()


def test_shared_prompt_forward_matches_per_row_forward(tmp_path):
    model, tokenizer = load_policy(str(make_chatml_model(tmp_path / "m")))
    prompts = ["say yes please", "What is 2 + 3? <tool_call>", "red"]  # different lengths: left padding
    ids = encode_prompts(tokenizer, prompts)
    rollout = sample_group(model, tokenizer, ids, group_size=3, max_new_tokens=6, generator=torch.Generator().manual_seed(0))
    p_ids, p_mask = left_pad(ids, tokenizer.pad_token_id)
    rows = torch.arange(9)
    shared = completion_logits(model, p_ids, p_mask, rollout.completion_ids, rollout.completion_mask, rows // 3)
    plain = _plain_logits(model, rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids, rollout.completion_mask)
    mask = rollout.completion_mask
    torch.testing.assert_close(shared[mask], plain[mask], atol=1e-5, rtol=1e-4)

    grads = []
    for logits in (shared, plain):
        model.zero_grad()
        logp = torch.log_softmax(logits, -1).gather(-1, rollout.completion_ids[..., None])[..., 0]
        (logp * mask).sum().backward(retain_graph=True)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4)
