"""``polyreward rm train``: preference pairs -> (optional ensemble -> preference strength) -> reward model.

The loop reads top to bottom: load pairs, optionally train ``ensemble_size`` reward models to measure each
pair's preference strength (Secrets of RLHF II, arXiv 2401.06080, Eq. 4) and turn it into per-pair targets
(flip / smooth) and margins (Eq. 6), then train the final model with :func:`~polyreward.rm.losses.preference_loss`
(+ SimCSE, Eq. 9, when ``contrastive_weight > 0``), evaluate held-out pair accuracy, save.

Metrics (``metrics.jsonl``, one record per step): ``loss/rm``, ``loss/contrastive``, ``rm/accuracy``,
``rm/delta_mean``, ``charts/epoch``; per epoch ``eval/accuracy/<objective>``; after the ensemble
``strength/mu_mean``, ``strength/sigma_mean``, ``strength/suspect_fraction``.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from polyreward.config import ConfigError, describe, load_config, to_mapping
from polyreward.lm.model import resolve_model_path
from polyreward.rm.config import RMConfig
from polyreward.rm.data import OnInvalid, PairSet, PreferencePair, load_pairs, sentiment_pairs, split_pairs, user_pairs
from polyreward.rm.losses import (
    adaptive_margin,
    denoise_targets,
    pair_accuracy,
    preference_loss,
    preference_strength,
    simcse_loss,
)
from polyreward.rm.model import META_FILE, RewardModel
from polyreward.rm.pairwise import PairwiseJudge, evaluate_judge, fit_judge
from polyreward.rm.vpl import VPLRewardModel, accuracy_summary, train_vpl, user_accuracy
from polyreward.runlog import RunLog

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


# ---------------------------------------------------------------- data


def load_data(config: RMConfig) -> tuple[PairSet, PairSet]:
    """(train, held-out) pairs as the config describes."""
    objectives = tuple(config.objectives)
    columns = dict(
        prompt_column=config.prompt_column,
        chosen_column=config.chosen_column,
        rejected_column=config.rejected_column,
        on_invalid=config.on_invalid,
    )
    synth = objectives or ("sentiment",)
    if config.train_data == "synthetic":
        train = sentiment_pairs(
            config.synthetic_size, flip_fraction=config.synthetic_flip_fraction, seed=config.seed, objectives=synth
        ).pairs
    else:
        train = load_pairs(config.train_data, objectives=objectives, **columns)
    if config.eval_data == "":
        return split_pairs(train, config.eval_fraction, config.seed)
    if config.eval_data == "synthetic":
        held_out = sentiment_pairs(config.synthetic_size, seed=config.seed + 1_000_003, objectives=synth).pairs
    else:
        held_out = load_pairs(config.eval_data, objectives=objectives, **columns)
    if held_out.objectives != train.objectives:
        raise ConfigError(f"eval_data objectives {held_out.objectives} differ from train_data's {train.objectives}")
    return train, held_out


def label_tensors(pairs: list[PreferencePair]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels[N, K], mask[N, K])``: given targets (unknown -> 0) and which are known."""
    known = torch.tensor([[v is not None for v in p.labels] for p in pairs])
    values = torch.tensor([[0.0 if v is None else v for v in p.labels] for p in pairs])
    return values, known


def pair_deltas(model: RewardModel, pairs: list[PreferencePair], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(r_c - r_r)[B, K]`` and ``(f_c - f_r)[B, H]`` (pooled features) in one forward pass over 2B texts."""
    texts = model.texts([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    rewards, features = model(*model.encode(texts, max_length))
    b = len(pairs)
    return rewards[:b] - rewards[b:], (features[:b] - features[b:]).float()


def score_pairs(model: RewardModel, pairs: list[PreferencePair], max_length: int, batch_size: int) -> torch.Tensor:
    """``(r_c - r_r)[N, K]`` without gradients."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            chunks = [pair_deltas(model, pairs[i : i + batch_size], max_length)[0] for i in range(0, len(pairs), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(chunks)


def evaluate_pairs(model: RewardModel, pairs: PairSet, max_length: int = 512, batch_size: int = 16) -> dict[str, float]:
    """Held-out pair accuracy per objective: ``{"eval/accuracy/<objective>": fraction}`` (ties count half)."""
    labels, known = label_tensors(pairs.pairs)
    accuracy = pair_accuracy(score_pairs(model, pairs.pairs, max_length, batch_size), labels, known)
    return {f"eval/accuracy/{name}": float(a) for name, a in zip(model.objectives, accuracy, strict=True)}


# ---------------------------------------------------------------- training


def new_model(config: RMConfig, objectives: tuple[str, ...], seed: int) -> RewardModel:
    model = RewardModel.from_backbone(
        resolve_model_path(config.model), objectives, dtype=_DTYPES[config.dtype], seed=seed
    ).to(config.device)
    if config.freeze_backbone:
        for param in model.classifier.base_model.parameters():
            param.requires_grad_(False)
    elif config.freeze_embeddings:
        model.classifier.get_input_embeddings().weight.requires_grad_(False)
    return model.train()


def fit(
    model: RewardModel,
    config: RMConfig,
    train: PairSet,
    *,
    epochs: int,
    seed: int,
    targets: torch.Tensor | None = None,
    margins: torch.Tensor | None = None,
    held_out: PairSet | None = None,
    log: RunLog | None = None,
    progress: bool = False,
    desc: str = "rm",
) -> RewardModel:
    """Train ``model`` on ``train`` for ``epochs`` (per-pair ``targets`` / ``margins`` ``[N, K]`` optional)."""
    labels, known = label_tensors(train.pairs)
    targets = labels if targets is None else targets
    margins = torch.zeros_like(labels) if margins is None else margins
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    order_rng = random.Random(seed)
    steps_per_epoch = -(-len(train) // config.batch_size)
    bar = _progress(epochs * steps_per_epoch, progress, desc)
    step = 0
    for epoch in range(epochs):
        order = list(range(len(train)))
        order_rng.shuffle(order)
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            metrics = _train_step(
                model, config, optimizer, params, [train.pairs[i] for i in idx], targets[idx], margins[idx], known[idx]
            )
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss/rm']:.3f}", acc=f"{metrics['rm/accuracy']:.2f}")
            if log is not None:
                log.log(step, {**metrics, "charts/epoch": epoch + (start + len(idx)) / len(order)})
        if held_out is not None and log is not None:
            log.log(step, evaluate_pairs(model, held_out, config.max_length))
    bar.close()
    return model


def _train_step(model, config, optimizer, params, pairs, target, margin, known) -> dict[str, float]:
    delta, diff = pair_deltas(model, pairs, config.max_length)
    target, margin, known = (t.to(delta.device) for t in (target, margin, known))
    loss_rm = preference_loss(delta, target, margin, known)
    loss = loss_rm
    loss_cl = torch.zeros(())
    if config.contrastive_weight > 0 and len(pairs) > 1:
        # SimCSE views of the preference-difference features (Section 3.1.1): two dropout masks.
        views = [F.dropout(diff, config.contrastive_dropout, training=True) for _ in range(2)]
        loss_cl = simcse_loss(*views, temperature=config.contrastive_temperature)
        loss = loss + config.contrastive_weight * loss_cl
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
    optimizer.step()
    accuracy = pair_accuracy(delta.detach(), target, known)
    return {
        "loss/rm": float(loss_rm.detach()),
        "loss/contrastive": float(loss_cl.detach()),
        "rm/accuracy": float(accuracy.nanmean()),
        "rm/delta_mean": float(delta.detach().mean()),
    }


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, dynamic_ncols=True)


def ensemble_strength(
    config: RMConfig, train: PairSet, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train ``ensemble_size`` models (seeds and data orders differ) and score every training pair.

    Returns ``(diffs[M, N, K], mu[N, K], sigma[N, K])`` (Eq. 4: population std over the M members).
    """
    diffs = []
    for m in range(config.ensemble_size):
        seed = config.seed + 1 + m
        member = new_model(config, train.objectives, seed)
        fit(member, config, train, epochs=config.ensemble_epochs, seed=seed, progress=progress, desc=f"ensemble {m + 1}")
        diffs.append(score_pairs(member, train.pairs, config.max_length, 2 * config.batch_size))
        del member
    stacked = torch.stack(diffs)
    mu, sigma = preference_strength(stacked)
    return stacked, mu, sigma


def strength_targets(config: RMConfig, train: PairSet, mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Per-pair ``(targets, margins)`` ``[N, K]`` from the ensemble mean, and summary metrics."""
    labels, known = label_tensors(train.pairs)
    targets = denoise_targets(mu, labels, config.denoise, config.smoothing)
    margins = adaptive_margin(mu, config.margin_scale) if config.margin == "strength" else torch.zeros_like(mu)
    suspect = (mu * (2 * labels - 1) < 0) & known
    metrics = {
        "strength/mu_mean": float(mu[known].mean()),
        "strength/suspect_fraction": float(suspect.sum() / known.sum()),
    }
    return targets, margins, metrics


def train(config: RMConfig, progress: bool = True) -> Path:
    """Train with a validated config; returns the run directory (``model/`` holds the reward model)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(to_mapping(config), indent=2))
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)  # a new run replaces the old records (no resume)
    if config.kind == "vpl":
        log = RunLog(run_dir, tensorboard=False)
        return _save_run(run_dir, config, *train_vpl(config, log), log)
    train_pairs, held_out = load_data(config)
    log = RunLog(run_dir, tensorboard=False)
    if config.kind == "pairwise":
        return _train_pairwise(config, run_dir, train_pairs, held_out, log)
    targets = margins = None
    if config.ensemble_size:
        _, mu, sigma = ensemble_strength(config, train_pairs, progress)
        targets, margins, metrics = strength_targets(config, train_pairs, mu)
        log.log(0, {**metrics, "strength/sigma_mean": float(sigma.mean())})
    model = new_model(config, train_pairs.objectives, config.seed)
    fit(
        model,
        config,
        train_pairs,
        epochs=config.epochs,
        seed=config.seed,
        targets=targets,
        margins=margins,
        held_out=held_out,
        log=log,
        progress=progress,
    )
    result = {
        "train_pairs": len(train_pairs),
        "held_out_pairs": len(held_out),
        "skipped_rows": len(train_pairs.skipped) + len(held_out.skipped),
        **evaluate_pairs(model, held_out, config.max_length),
    }
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2))
    model.save(run_dir / "model", extra={"train_config": to_mapping(config), "eval": result})
    log.close()
    return run_dir


def _train_pairwise(config: RMConfig, run_dir: Path, train_pairs: PairSet, held_out: PairSet, log: RunLog) -> Path:
    """``kind: pairwise``: fine-tune the backbone as an A/B judge (:mod:`polyreward.rm.pairwise`) and save it."""
    torch.manual_seed(config.seed)
    judge = PairwiseJudge.from_pretrained(resolve_model_path(config.model), _DTYPES[config.dtype])
    judge.model.to(config.device)
    if config.freeze_embeddings:
        judge.model.get_input_embeddings().weight.requires_grad_(False)
    fit_judge(
        judge,
        train_pairs,
        both_orderings=config.both_orderings,
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        seed=config.seed,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        held_out=held_out,
        log=log,
    )
    result = {"train_pairs": len(train_pairs), "held_out_pairs": len(held_out), **evaluate_judge(judge, held_out)}
    return _save_run(run_dir, config, judge, result, log)


def _save_run(run_dir: Path, config: RMConfig, model, result: dict[str, Any], log: RunLog) -> Path:
    """``eval.json`` and ``model/`` (``model.save(path, extra=...)``) of a pairwise or VPL run; closes the log."""
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2))
    model.save(run_dir / "model", extra={"train_config": to_mapping(config), "eval": result})
    log.close()
    return run_dir


def train_from_cli(config_path: str | None, settings: list[str], progress: bool, help_config: bool) -> int:
    if help_config:
        print("polyreward rm train config keys:\n" + describe(RMConfig))
        return 0
    config = load_config(RMConfig, config_path, settings)
    run_dir = train(config, progress=progress)
    print(json.dumps(json.loads((run_dir / "eval.json").read_text()), indent=2))
    print(f"reward model: {run_dir / 'model'}", file=sys.stderr)
    return 0


def eval_from_cli(model_dir: str, data: str, on_invalid: OnInvalid, size: int, seed: int) -> dict[str, Any]:
    """Pair accuracy of a saved reward model on a file of pairs (label columns = its heads) or 'synthetic'.

    The kind is read from the model's ``polyreward_rm.json``: a Bradley-Terry model (accuracy per head),
    a pairwise judge (accuracy and position consistency over both orderings) or a VPL model (held-out
    accuracy per user, each user's first ``vpl_context_pairs`` pairs as context)."""
    meta_path = Path(model_dir) / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{model_dir}: not a polyreward reward model (no {META_FILE})")
    meta = json.loads(meta_path.read_text())
    trained = meta.get("train_config", {})
    if meta.get("kind") == "pairwise":
        pairs = sentiment_pairs(size, seed=seed).pairs if data == "synthetic" else load_pairs(data, on_invalid=on_invalid)
        return {"pairs": len(pairs), **evaluate_judge(PairwiseJudge.from_pretrained(model_dir), pairs)}
    if meta.get("kind") == "vpl":
        context = int(trained.get("vpl_context_pairs", 8))
        if data == "synthetic":
            pairs = user_pairs(max(2, size // (2 * context)), 2 * context, seed=seed).pairs
        else:
            pairs = load_pairs(data, user_column=trained.get("user_column", "user"), on_invalid=on_invalid)
        per_user = user_accuracy(VPLRewardModel.load(model_dir), pairs.pairs, context)
        return {"pairs": len(pairs), "users": len(per_user), **accuracy_summary(per_user)}
    model = RewardModel.load(model_dir)
    objectives = model.objectives
    if data == "synthetic":
        pairs = sentiment_pairs(size, seed=seed, objectives=objectives).pairs
    else:
        columns = () if objectives == ("reward",) else objectives
        pairs = load_pairs(data, objectives=columns, on_invalid=on_invalid)
    return {"pairs": len(pairs), "skipped_rows": len(pairs.skipped), **evaluate_pairs(model, pairs)}
