"""Tasks: where prompts come from and which rewards score them by default.

``arithmetic`` is the built-in default: small additions asked in a one-shot chat that shows the
answer format, scored by three named rewards (correct, format, brevity).
"""

from __future__ import annotations

import random
import re
from typing import Any

from polyreward.lm.config import TrainConfig
from polyreward.lm.data import PromptSource, load_rows
from polyreward.rewards import RewardSet
from polyreward.rewards.answers import answer_reward
from polyreward.rewards.catalog import build_rewards
from polyreward.rewards.format import format_reward
from polyreward.rewards.reasoning_gym import reasoning_gym_reward, reasoning_gym_task
from polyreward.rewards.text import completion_text
from polyreward.rm.verdict_task import is_verdict_task, verdict_task

SYSTEM = "You are a calculator. Reply with the result inside <answer></answer> tags."


def arithmetic_rows(size: int, seed: int, max_operand: int = 9) -> list[dict[str, Any]]:
    """``size`` rows ``{"prompt": chat messages, "answer": "a+b"}`` with operands in ``1..max_operand``."""
    rng = random.Random(seed)
    rows = []
    for _ in range(size):
        a, b = rng.randint(1, max_operand), rng.randint(1, max_operand)
        prompt = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "What is 3 + 4?"},
            {"role": "assistant", "content": "<answer>7</answer>"},
            {"role": "user", "content": f"What is {a} + {b}?"},
        ]
        rows.append({"prompt": prompt, "answer": str(a + b)})
    return rows


correct = answer_reward("exact", tag="answer", boxed=False, name="correct")


def answer_format(prompts, completions, **kwargs) -> list[float]:
    """1 for exactly ``<answer>INTEGER</answer>``; 0.5 for one answer tag pair with other text; else 0."""
    scores = []
    for c in completions:
        text = completion_text(c).strip()
        if re.fullmatch(r"<answer>\s*-?\d+\s*</answer>", text):
            scores.append(1.0)
        else:
            scores.append(0.5 if text.count("<answer>") == 1 and text.count("</answer>") == 1 else 0.0)
    return scores


def brevity(prompts, completions, completion_ids=None, **kwargs) -> list[float]:
    """1 up to 8 tokens, falling linearly to 0 at 32 tokens (characters / 4 without token ids)."""
    if completion_ids is not None:
        lengths = [len(ids) for ids in completion_ids]
    else:
        lengths = [len(completion_text(c)) / 4 for c in completions]
    return [1.0 - min(1.0, max(0.0, n - 8) / 24) for n in lengths]


def build_task(config: TrainConfig) -> tuple[PromptSource, RewardSet]:
    """The prompt source and reward set that ``config.task`` names (``config.rewards`` replaces the defaults)."""
    params = dict(config.task_params)
    if params and not (config.task == "arithmetic" or config.task.startswith("reasoning_gym:")):
        raise ValueError(f"task_params: only the 'arithmetic' and reasoning-gym tasks take them, not {config.task!r}")
    if config.task == "arithmetic":
        unknown = sorted(set(params) - {"max_operand"})
        if unknown:
            raise ValueError(f"task_params: {unknown} are not settings of 'arithmetic' (it takes max_operand)")
        rows = arithmetic_rows(config.task_size, config.seed, **params)
        defaults = [correct, answer_format, brevity]
    elif config.task.startswith("reasoning_gym:"):
        dataset = config.task.split(":", 1)[1]
        try:
            rows = reasoning_gym_task(dataset, size=config.task_size, seed=config.seed, **params)
        except (TypeError, ValueError, AssertionError) as err:
            raise ValueError(f"task_params for {config.task!r}: {err}") from err
        defaults = [reasoning_gym_reward(), format_reward(tags=("answer",))]
    elif is_verdict_task(config.task):  # judge preference pairs (polyreward.rm.verdict_task)
        rows, defaults = verdict_task(config.task, config.task_size, config.seed)
    elif config.task.endswith((".jsonl", ".json", ".parquet", ".csv")):
        rows, defaults = load_rows(config.task, config.prompt_column), []
    else:
        raise ValueError(
            f"task {config.task!r}: expected 'arithmetic', 'reasoning_gym:<dataset>', "
            "'verdict:<pairs file or synthetic>' or a .jsonl/.json/.parquet/.csv file"
        )
    rewards = build_rewards(config.rewards) if config.rewards else defaults
    if not rewards:
        raise ValueError(f"task {config.task!r}: a file task needs rewards in the config (rewards: [{{kind: ...}}])")
    source = PromptSource(rows, seed=config.seed, name=config.task, prompt_column=config.prompt_column)
    return source, RewardSet(rewards)
