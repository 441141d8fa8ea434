"""The reward-model trainer's config: one flat, typed dataclass (``polyreward rm train --help-config``)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from polyreward.config import ConfigError, option
from polyreward.lm.model import DEFAULT_MODEL, Dtype
from polyreward.rm.data import OnInvalid
from polyreward.rm.losses import Denoise


@dataclasses.dataclass
class RMConfig:
    kind: Literal["bt", "pairwise", "vpl"] = option(
        "bt",
        "'bt': Bradley-Terry reward model (K heads); 'pairwise': generative A/B judge (Pairwise-RL); 'vpl': "
        "user-conditioned reward model (VPL)",
    )
    # model
    model: str = option(DEFAULT_MODEL, "local HF causal-LM directory (the backbone), or the built-in 'smollm2-135m'")
    dtype: Dtype = option("float32", "parameter dtype: float32 or bfloat16")
    freeze_backbone: bool = option(False, "train the heads only (a linear probe on the backbone's features)")
    freeze_embeddings: bool = option(True, "keep the token embeddings fixed (saves memory with large vocabularies)")
    max_length: int = option(512, "tokens per (prompt, response) text; longer texts are truncated")
    # data
    train_data: str = option("synthetic", "a .jsonl/.parquet/.csv file of pairs, or 'synthetic' (generated sentiment pairs)")
    eval_data: str = option("", "held-out pairs: a file, 'synthetic' (clean generated pairs), or '' (split off train_data)")
    eval_fraction: float = option(0.1, "share of train_data held out when eval_data is ''")
    objectives: list[str] = option([], "one head per name; each is a label column (1/0/null); [] = one head 'reward'")
    prompt_column: str = option("prompt", "column holding the prompt")
    chosen_column: str = option("chosen", "column holding the preferred response")
    rejected_column: str = option("rejected", "column holding the other response")
    on_invalid: OnInvalid = option("raise", "malformed rows: 'raise' (error naming file and row) or 'skip' (counted)")
    synthetic_size: int = option(512, "pairs generated for train_data='synthetic' (and for eval_data='synthetic')")
    synthetic_flip_fraction: float = option(0.0, "share of generated training pairs with chosen/rejected swapped")
    both_orderings: bool = option(True, "kind=pairwise: show every pair in both orders (labels swapped)")
    # VPL (kind=vpl)
    user_column: str = option("user", "kind=vpl: column holding the id of the user who labelled the pair")
    vpl_latent_dim: int = option(8, "kind=vpl: dimension D of the user latent z")
    vpl_kl_weight: float = option(0.1, "kind=vpl: beta, the weight of KL(q(z | context) || N(0, I)) in the ELBO")
    vpl_context_pairs: int = option(8, "kind=vpl: C labelled pairs per user that the encoder reads (and C targets)")
    # preference strength (Secrets of RLHF II)
    ensemble_size: int = option(0, "M reward models trained first to measure preference strength; 0 = none")
    ensemble_epochs: int = option(1, "epochs of each ensemble member")
    denoise: Denoise = option("none", "suspect pairs (ensemble mean against the label): 'none', 'flip' or 'smooth'")
    smoothing: float = option(0.1, "alpha of denoise='smooth' (the soft label is 1 - alpha)")
    margin: Literal["none", "strength"] = option(
        "none", "'strength': adaptive margin = margin_scale * ensemble mean (Eq. 6)"
    )
    margin_scale: float = option(1.0, "scale of the adaptive margin (the paper: 1)")
    contrastive_weight: float = option(0.0, "beta of the SimCSE loss on preference-difference features (0 = off)")
    contrastive_temperature: float = option(0.05, "SimCSE temperature tau")
    contrastive_dropout: float = option(0.1, "feature dropout that makes SimCSE's two views")
    # optimization
    epochs: int = option(1, "passes over the training pairs")
    batch_size: int = option(8, "pairs per optimizer step")
    learning_rate: float = option(1e-5, "AdamW learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    max_grad_norm: float = option(1.0, "gradient clipping norm (0 = off)")
    seed: int = option(0, "seed for data order, generated data and head initialization")
    threads: int = option(0, "torch CPU threads (0 = torch's default)")
    device: str = option("cpu", "torch device")
    # output
    output_dir: str = option("runs/rm", "run directory: metrics.jsonl, eval.json, model/")

    def __post_init__(self) -> None:
        if self.vpl_kl_weight < 0:
            raise ConfigError(f"vpl_kl_weight: must be >= 0, got {self.vpl_kl_weight}")
        for name in (
            "max_length",
            "epochs",
            "batch_size",
            "synthetic_size",
            "ensemble_epochs",
            "vpl_latent_dim",
            "vpl_context_pairs",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("ensemble_size", "weight_decay", "max_grad_norm", "contrastive_weight", "threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not self.learning_rate > 0 or not self.contrastive_temperature > 0:
            raise ConfigError("learning_rate and contrastive_temperature: must be > 0")
        for name in ("synthetic_flip_fraction", "smoothing", "contrastive_dropout"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name}: must be in [0, 1], got {getattr(self, name)}")
        if not 0 < self.eval_fraction < 1:
            raise ConfigError(f"eval_fraction: must be in (0, 1), got {self.eval_fraction}")
        if (self.denoise != "none" or self.margin != "none") and self.ensemble_size < 1:
            raise ConfigError(
                f"denoise={self.denoise!r} / margin={self.margin!r} need the preference strength: set ensemble_size >= 1"
            )
        if self.kind != "bt":
            bt_only = {
                "objectives": self.objectives,
                "ensemble_size": self.ensemble_size,
                "contrastive_weight": self.contrastive_weight,
                "freeze_backbone": self.freeze_backbone and self.kind == "pairwise",
            }
            used = [name for name, value in bt_only.items() if value]
            if used:
                raise ConfigError(f"kind={self.kind!r}: {used} apply to kind='bt' only (one preference, no heads)")
        if len(set(self.objectives)) != len(self.objectives):
            raise ConfigError(f"objectives: names must be distinct, got {self.objectives}")
