"""A tiny random-init Llama with a word-level tokenizer and chat template, built offline.

``python -m tests.e2e.tiny_lm RUN_DIR STEPS [--resume]`` trains it on a toy task (used by the
SIGKILL/resume test, which needs a separate process to kill).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from tests.tiny_models import llama_config, word_tokenizer

WORDS = ["yes", "no", "red", "blue", "one", "two", "three", "say", "colour", "number", "please"]
CHAT = "{% for m in messages %}{{ m['content'] }} {% endfor %}{% if add_generation_prompt %}answer {% endif %}"


def make_tiny_model(directory: str | Path, seed: int = 0) -> Path:
    """Save a ~30k-parameter LlamaForCausalLM + tokenizer to ``directory`` (deterministic in ``seed``)."""
    from transformers import LlamaForCausalLM

    directory = Path(directory)
    if (directory / "config.json").exists():
        return directory
    tokenizer = word_tokenizer(["answer", *WORDS], chat_template=CHAT)
    torch.manual_seed(seed)
    config = llama_config(len(tokenizer), max_position_embeddings=128, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def says_yes(prompts, completions, **kwargs):
    return [float(c.split().count("yes")) / 4 for c in completions]


def is_short(prompts, completions, **kwargs):
    return [1.0 if len(c.split()) <= 3 else 0.0 for c in completions]


ROWS = [{"prompt": f"say {w} please", "topic": w} for w in WORDS]


def tiny_config(run_dir: str | Path, model_dir: str | Path, **overrides):
    from polyreward.lm.config import TrainConfig

    values = dict(
        model=str(model_dir),
        output_dir=str(run_dir),
        prompts_per_step=2,
        group_size=4,
        max_new_tokens=6,
        steps=4,
        save_every=1,
        learning_rate=1e-2,
        estimator="gdpo",
        threads=1,
        samples_to_log=2,
    )
    return TrainConfig(**{**values, **overrides})


def run(run_dir: str | Path, steps: int, resume: bool, model_dir: str | Path) -> None:
    from polyreward.lm.model import load_policy
    from polyreward.lm.trainer import Trainer

    torch.set_num_threads(1)
    config = tiny_config(run_dir, model_dir, steps=steps)
    model, tokenizer = load_policy(config.model)
    Trainer(model, tokenizer, [says_yes, is_short], ROWS, config).train(resume=resume, progress=False)


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]), "--resume" in sys.argv, sys.argv[3])


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    'What is 2 + 3? <tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>',
    "<tool_response>5</tool_response> <answer>5</answer> user assistant tool system",
    "say yes please, the colour is red or blue; numbers one two three 0123456789",
]


def make_chatml_model(directory: str | Path, seed: int = 0) -> Path:
    """A tiny byte-level BPE tokenizer with a ChatML template (any text encodes) and a random Llama."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    directory = Path(directory)
    if (directory / "config.json").exists():
        return directory
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(CORPUS * 5, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    tokenizer.chat_template = CHATML
    torch.manual_seed(seed)
    config = llama_config(
        len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
