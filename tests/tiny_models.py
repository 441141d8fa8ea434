"""Offline building blocks for tiny test models: a word-level tokenizer and a small Llama config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")  # ids 0..3: pad, unk, bos, eos


def word_tokenizer(words: Sequence[str], chat_template: str | None = None):
    """A whitespace word-level ``PreTrainedTokenizerFast`` over ``SPECIALS + words`` (no hub access)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(dict.fromkeys([*SPECIALS, *words]))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def llama_config(vocab_size: int, **overrides: Any):
    """A 2-layer, 32-wide ``LlamaConfig`` with the ``SPECIALS`` ids; ``overrides`` change any field."""
    from transformers import LlamaConfig

    values = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    return LlamaConfig(**{**values, **overrides})


def micro_llama(words: Sequence[str], seed: int = 0):
    """``(model, tokenizer)``: a ~3k-parameter, 1-layer random Llama over ``words`` (seeded), for TRL tests."""
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = word_tokenizer(words)
    torch.manual_seed(seed)
    config = llama_config(
        len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config), tokenizer
