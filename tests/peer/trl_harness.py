"""Run TRL 1.16's real GRPO advantage code on a reward matrix we choose.

``trl_advantages`` builds a real ``trl.GRPOTrainer`` around a tiny random-init Llama (built offline, nothing is
downloaded) and calls ``GRPOTrainer._generate_and_score_completions`` -- the method where TRL computes advantages,
including the ``sum_then_normalize`` / ``normalize_then_sum`` branches. No TRL math is re-implemented here: the tiny
model generates throw-away completions, and the reward functions ignore them and return our predetermined values.

Row order: every input dict carries its own reward row in the ``peer_rewards`` column. TRL forwards each dataset
column to reward functions as a list aligned with ``inputs`` (``_calculate_rewards``), and ``output["advantages"][i]``
belongs to ``inputs[i]``. The inputs are laid out the way TRL's ``RepeatSampler`` lays them out (each prompt repeated
``num_generations`` times consecutively), so rows ``[g*G, (g+1)*G)`` form group ``g`` -- the same slicing TRL's
``rewards.view(-1, num_generations)`` applies. Hence the returned tensor is in the row order of ``rewards``.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

from tests.tiny_models import micro_llama

_COLUMN = "peer_rewards"


@functools.lru_cache(maxsize=1)
def _scratch_dir() -> tempfile.TemporaryDirectory:
    """One scratch ``output_dir`` shared by every trainer (nothing is written to it); removed at interpreter exit."""
    return tempfile.TemporaryDirectory(prefix="trl_peer_")


@functools.lru_cache(maxsize=1)
def _tiny_model_and_tokenizer():
    """A word-level tokenizer and a ~3k-parameter random-init LlamaForCausalLM, built locally once per process."""
    return micro_llama(["prompt", "a", "b", "c", "d", "e", "f", "g", "h"])


def _column_reward(k: int):
    """A TRL-style reward function returning column ``k`` of each completion's ``peer_rewards`` row."""

    def reward(prompts, completions, **kwargs):
        return [row[k] for row in kwargs[_COLUMN]]

    reward.__name__ = f"peer_reward_{k}"
    return reward


@functools.lru_cache(maxsize=32)
def _trainer(num_rows: int, group_size: int, weights: tuple[float, ...], aggregation: str, scale_rewards: str):
    """A real GRPOTrainer configured for one (batch shape, weights, aggregation, scaling) combination."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = _tiny_model_and_tokenizer()
    num_prompts = num_rows // group_size
    dataset = Dataset.from_dict({"prompt": [f"prompt {'abcdefgh'[g % 8]}" for g in range(num_prompts)]})
    reward_funcs = [_column_reward(k) for k in range(len(weights))]
    with warnings.catch_warnings():  # transformers 5.x deprecation noise (gradient_checkpointing renames)
        warnings.simplefilter("ignore", FutureWarning)
        args = GRPOConfig(
            output_dir=_scratch_dir().name,
            use_cpu=True,
            bf16=False,
            fp16=False,
            report_to=[],
            logging_steps=1,
            save_strategy="no",
            seed=0,
            num_generations=group_size,
            per_device_train_batch_size=num_rows,
            max_completion_length=2,
            multi_objective_aggregation=aggregation,
            scale_rewards=scale_rewards,
            reward_weights=list(weights),
        )
        trainer = GRPOTrainer(
            model=model, processing_class=tokenizer, reward_funcs=reward_funcs, args=args, train_dataset=dataset
        )
    trainer.model.train()  # `_generate_and_score_completions` uses `num_generations` (not the eval one) in train mode
    return trainer


def trl_advantages(
    rewards: list[list[float | None]],
    group_size: int,
    weights: list[float],
    aggregation: str,
    scale_rewards: str = "group",
) -> torch.Tensor:
    """TRL's GRPO advantages for an ``[N][K]`` reward matrix, shape ``[N]``, in the row order of ``rewards``.

    Rows ``[g*group_size, (g+1)*group_size)`` are the completions of prompt ``g``. ``None`` entries are passed to TRL
    as ``None`` (TRL turns them into NaN). ``aggregation`` is TRL's ``multi_objective_aggregation``
    (``"sum_then_normalize"`` or ``"normalize_then_sum"``); ``scale_rewards`` is ``"group"``, ``"batch"`` or ``"none"``.
    """
    num_rows = len(rewards)
    if num_rows == 0 or num_rows % group_size:
        raise ValueError(f"{num_rows} rows do not split into groups of {group_size}")
    if any(len(row) != len(weights) for row in rewards):
        raise ValueError(f"every row needs {len(weights)} rewards (one per weight)")
    trainer = _trainer(num_rows, group_size, tuple(float(w) for w in weights), aggregation, scale_rewards)
    # Lay the batch out as RepeatSampler(mini_repeat_count=group_size) does: prompt g repeated group_size times.
    prompts = trainer.train_dataset["prompt"]
    inputs = [{"prompt": prompts[i // group_size], _COLUMN: list(row)} for i, row in enumerate(rewards)]
    trl_logger = logging.getLogger("trl.trainer.grpo_trainer")
    level = trl_logger.level
    trl_logger.setLevel(logging.ERROR)  # silence TRL's "all reward functions returned None" warning
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            output = trainer._generate_and_score_completions(inputs)
    finally:
        trl_logger.setLevel(level)
    return output["advantages"].detach().cpu().clone()
