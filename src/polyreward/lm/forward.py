"""The training forward pass: logits for every completion token, each prompt computed once per group.

The G completions of a prompt share it: the prompt is run once (with gradients), its key/value
cache is gathered out to the G rows, and the completions run on top. Gradients reaching the shared
prompt activations from all G rows add up, exactly as if each row had its own copy.
"""

from __future__ import annotations

import torch
from torch import Tensor

from polyreward.lm.rollout import positions


def completion_logits(
    model,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    completion_attention: Tensor,
    prompt_of_row: Tensor,
) -> Tensor:
    """Logits ``[B, Lc, V]`` (float32) predicting each of the B rows' completion tokens.

    Args: ``prompt_ids[P, Lp]`` / ``prompt_mask[P, Lp]`` for the P distinct prompts (left-padded),
    ``completion_ids[B, Lc]`` / ``completion_attention[B, Lc]`` (right-padded) and
    ``prompt_of_row[B]`` (index into the P prompts).
    """
    out = model(
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        position_ids=positions(prompt_mask),
        use_cache=True,
        logits_to_keep=1,
    )
    first = out.logits[:, -1].index_select(0, prompt_of_row)  # predicts each row's first completion token
    if completion_ids.shape[1] == 1:
        return first[:, None].float()
    cache = out.cache
    cache.batch_select_indices(prompt_of_row)  # P prompt caches -> B rows (repeated indices gather copies)
    attention = torch.cat([prompt_mask.index_select(0, prompt_of_row), completion_attention], dim=1)
    position = positions(attention)[:, prompt_ids.shape[1] :]
    rest = model(
        input_ids=completion_ids[:, :-1],
        attention_mask=attention[:, :-1],
        position_ids=position[:, :-1],
        cache=cache,
        use_cache=True,
    )
    return torch.cat([first[:, None], rest.logits], dim=1).float()
