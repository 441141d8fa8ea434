"""Language-model evidence runs (claims 1b, 1c, 9c): the held-out greedy evaluation they share.

Prompts come from the task built with ``EVAL_SEED``, a seed no run trains on; every reward of the
task scores the greedy completions, and **joint success** is the share of completions with every
reward at its best value.
"""

from __future__ import annotations

import dataclasses

import torch

from polyreward.lm.config import TrainConfig
from polyreward.lm.rollout import encode_prompts, sample_group
from polyreward.lm.tasks import build_task

EVAL_SEED = 10_007  # prompts of the evaluation: a seed no run trains on


@torch.no_grad()
def evaluate_joint(model, tokenizer, config: TrainConfig, prompts: int, best: dict[str, float]) -> dict[str, float]:
    """``{"eval/joint", "eval/<reward>"}``: means over greedy completions of ``prompts`` held-out prompts.

    ``best``: each reward's best value (joint success = all of them on the same completion).
    """
    data, rewards = build_task(dataclasses.replace(config, seed=EVAL_SEED))
    rows = data.batch(0, prompts)
    ids = encode_prompts(tokenizer, [row[data.prompt_column] for row in rows])
    was_training = model.training
    model.eval()
    rollout = sample_group(model, tokenizer, ids, 1, config.max_new_tokens, temperature=0.0, top_p=1.0)
    model.train(was_training)
    columns = {c: [row.get(c) for row in rows] for c in data.columns}
    completions = zip(rollout.completion_ids, rollout.completion_mask, strict=True)
    columns["completion_ids"] = [tokens[m].tolist() for tokens, m in completions]  # lengths in tokens, as in training
    scored = rewards.score([r[data.prompt_column] for r in rows], rollout.texts, group_size=1, **columns)
    matrix = scored.batch.rewards  # [N, K] in the order of scored.batch.names
    out = {f"eval/{name}": float(matrix[:, k].mean()) for k, name in enumerate(scored.batch.names)}
    targets = torch.tensor([best[name] for name in scored.batch.names], dtype=matrix.dtype)
    out["eval/joint"] = float((matrix == targets).all(dim=1).float().mean())
    return out
