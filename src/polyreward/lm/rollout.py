"""Sampling G completions per prompt, computing each prompt's prefix once.

The prompts are prefilled once (``[P, Lp]``), their key/value cache is repeated G times, and the
``P * G`` completions are decoded together; HF ``generate(num_return_sequences=G)`` would
prefill every prompt G times.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


@dataclasses.dataclass
class Rollout:
    """Token-level result of sampling; row ``i`` answers prompt ``i // group_size``.

    prompt_ids: ``[N, Lp]`` left-padded prompt tokens; prompt_mask ``[N, Lp]``.
    completion_ids: ``[N, Lc]`` right-padded sampled tokens (EOS included when produced);
        completion_mask ``[N, Lc]`` marks the tokens to train on (here: every real completion token).
    texts: the N decoded completions (special tokens removed).
    """

    prompt_ids: Tensor
    prompt_mask: Tensor
    completion_ids: Tensor
    completion_mask: Tensor
    texts: list[str]
    group_size: int

    @property
    def num_samples(self) -> int:
        return self.completion_ids.shape[0]

    @property
    def completion_attention(self) -> Tensor:
        """``[N, Lc]`` tokens the model attends to (multi-turn rollouts add tool tokens it is not trained on)."""
        return self.completion_mask

    def subset(self, rows: Tensor) -> Rollout:
        """The rollout restricted to ``rows`` (e.g. groups kept by dynamic sampling)."""
        picked = rows.tolist()
        return dataclasses.replace(
            self,
            prompt_ids=self.prompt_ids[rows],
            prompt_mask=self.prompt_mask[rows],
            completion_ids=self.completion_ids[rows],
            completion_mask=self.completion_mask[rows],
            texts=[self.texts[i] for i in picked],
        )


def encode_prompts(tokenizer, prompts: Sequence[str | list[dict]]) -> list[list[int]]:
    """Token ids of each prompt through the chat template (plain strings become one user message)."""
    ids = []
    for prompt in prompts:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        ids.append(list(encoded["input_ids"]))
    return ids


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """``[P, max_len]`` ids and mask with padding on the left."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = True
    return ids, mask


def positions(mask: Tensor) -> Tensor:
    """Position ids that skip left padding: ``cumsum(mask) - 1`` (0 at padding)."""
    return (mask.long().cumsum(-1) - 1).clamp_min(0)


def sample_next(logits: Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> Tensor:
    """One token per row from ``logits[B, V]`` with temperature and nucleus (top-p) filtering."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > top_p  # keep the smallest set reaching top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    if generator is not None and probs.device != generator.device:
        probs = probs.to(generator.device)  # the seeded generator (and its checkpointed state) stays on the CPU
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def sample_group(
    model,
    tokenizer,
    prompt_ids: Sequence[Sequence[int]],
    group_size: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Rollout:
    """Sample ``group_size`` completions for each of the P prompts (``P * G`` rows, grouped)."""
    device = next(model.parameters()).device
    eos_ids = _eos_ids(model, tokenizer)
    ids, mask = left_pad(prompt_ids, tokenizer.pad_token_id)
    ids, mask = ids.to(device), mask.to(device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask), use_cache=True, logits_to_keep=1)
    cache = out.cache
    cache.batch_repeat_interleave(group_size)
    logits = out.logits[:, -1].repeat_interleave(group_size, dim=0)
    mask = mask.repeat_interleave(group_size, dim=0)
    next_position = positions(mask)[:, -1] + 1
    rows = mask.shape[0]
    tokens = torch.full((rows, max_new_tokens), tokenizer.pad_token_id, dtype=torch.long, device=device)
    alive = torch.ones(rows, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        token = sample_next(logits, temperature, top_p, generator).to(device)
        tokens[:, t] = torch.where(alive, token, tokenizer.pad_token_id)
        alive = alive & ~torch.isin(token, eos_ids)
        if not alive.any() or t == max_new_tokens - 1:
            completion_mask = _completion_mask(tokens[:, : t + 1], eos_ids)
            tokens = tokens[:, : t + 1]
            break
        mask = torch.cat([mask, torch.ones(rows, 1, dtype=torch.bool, device=device)], dim=1)
        out = model(
            input_ids=token[:, None], attention_mask=mask, position_ids=next_position[:, None], cache=cache, use_cache=True
        )
        cache, logits, next_position = out.cache, out.logits[:, -1], next_position + 1
    texts = tokenizer.batch_decode(tokens.masked_fill(~completion_mask, tokenizer.pad_token_id), skip_special_tokens=True)
    prompt_rows, prompt_mask = left_pad(prompt_ids, tokenizer.pad_token_id)
    return Rollout(
        prompt_ids=prompt_rows.repeat_interleave(group_size, dim=0),
        prompt_mask=prompt_mask.repeat_interleave(group_size, dim=0),
        completion_ids=tokens.cpu(),
        completion_mask=completion_mask.cpu(),
        texts=texts,
        group_size=group_size,
    )


def _eos_ids(model, tokenizer) -> Tensor:
    ids = model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    ids = sorted({*ids, tokenizer.eos_token_id} - {None})
    return torch.tensor(ids, dtype=torch.long, device=next(model.parameters()).device)


def _completion_mask(tokens: Tensor, eos_ids: Tensor) -> Tensor:
    """Real tokens: everything up to and including the first EOS of each row."""
    is_eos = torch.isin(tokens, eos_ids)
    after_eos = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
    return ~after_eos


def demonstration_rollout(tokenizer, prompts: Sequence[Any], targets: Sequence[str]) -> Rollout:
    """Demonstrations as a one-sample-per-prompt :class:`Rollout` the trainer's forward can score.

    Prompts go through the chat template (as for sampling); each target is tokenized without special
    tokens and ends with EOS. ``completion_ids[M, Lt]`` right-padded, ``completion_mask[M, Lt]``.
    """
    if len(prompts) != len(targets) or not prompts:
        raise ValueError(f"demonstrations: need one target per prompt, got {len(prompts)} prompts, {len(targets)} targets")
    prompt_ids, prompt_mask = left_pad(encode_prompts(tokenizer, prompts), tokenizer.pad_token_id)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    target_ids = [list(tokenizer(t, add_special_tokens=False)["input_ids"]) + eos for t in targets]
    width = max(len(t) for t in target_ids)
    ids = torch.full((len(targets), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(targets), width), dtype=torch.bool)
    for row, seq in enumerate(target_ids):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = True
    return Rollout(prompt_ids, prompt_mask, ids, mask, list(targets), group_size=1)
