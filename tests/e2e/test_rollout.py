"""Grouped sampling with one prefill per prompt equals Hugging Face generate (greedy) row by row."""

import torch

from polyreward.lm.model import load_policy
from polyreward.lm.rollout import encode_prompts, left_pad, sample_group

from .tiny_lm import make_tiny_model


def test_greedy_grouped_sampling_matches_hf_generate(tmp_path):
    model, tokenizer = load_policy(str(make_tiny_model(tmp_path / "m")))
    model.eval()
    prompts = ["say yes please", "colour", "say two three one please"]  # different lengths: left padding
    ids = encode_prompts(tokenizer, prompts)
    rollout = sample_group(model, tokenizer, ids, group_size=2, max_new_tokens=5, temperature=0)
    for p, prompt_ids in enumerate(ids):
        x, mask = left_pad([prompt_ids], tokenizer.pad_token_id)
        expected = model.generate(
            input_ids=x, attention_mask=mask, do_sample=False, max_new_tokens=5, pad_token_id=tokenizer.pad_token_id
        )[0, x.shape[1] :]
        for row in (2 * p, 2 * p + 1):
            got = rollout.completion_ids[row][rollout.completion_mask[row]]
            assert got.tolist() == expected[: len(got)].tolist()
            assert len(got) == 5 or got[-1].item() == tokenizer.eos_token_id


def test_sampling_is_reproducible_with_a_seeded_generator(tmp_path):
    model, tokenizer = load_policy(str(make_tiny_model(tmp_path / "m")))
    ids = encode_prompts(tokenizer, ["say yes please", "colour"])
    runs = [sample_group(model, tokenizer, ids, 4, 6, generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    assert torch.equal(runs[0].completion_ids, runs[1].completion_ids) and runs[0].texts == runs[1].texts
    assert runs[0].prompt_ids.shape[0] == 8 and runs[0].group_size == 4
