"""VPL: a latent-conditioned (personalized) reward model, Poddar et al. 2024, arXiv 2408.10075.

A user is a handful of pairs they labelled (the *context*). The encoder embeds each context pair from the
backbone's pooled features of its chosen and rejected texts, ``e_i = MLP([f(x_i, y_i^w); f(x_i, y_i^l)])``,
pools the ``e_i`` with a permutation-invariant mean, and maps the pool to ``mean, logvar`` of
``q(z | context) = N(mean, diag(exp(logvar)))``. The reward head reads ``r(x, y, z) = MLP([f(x, y); z])``.
Training maximizes, per user, the ELBO (:func:`~polyreward.rm.losses.vpl_elbo`)::

    ELBO = sum_i log sigma( r(x_i, y_i^w, z) - r(x_i, y_i^l, z) ) - beta * KL( q(z | context) || N(0, I) ),
    z = mean + exp(logvar / 2) * eps   (one reparameterized sample per user and step)

over the user's *target* pairs (other pairs of the same user). At inference a user's context gives
``z = mean`` (the posterior mean) and the completions are scored with ``r(x, y, z)``.

Metrics (``metrics.jsonl``): ``loss/rm`` (minus the ELBO per target pair), ``loss/kl``, ``rm/accuracy``,
``vpl/logvar_mean``, ``charts/epoch``; per epoch ``eval/accuracy/reward`` and ``eval/accuracy/<user type>``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from polyreward.rm.data import GeneratedUsers, PairSet, PreferencePair, load_pairs, user_pairs, users_of
from polyreward.rm.losses import gaussian_kl, vpl_elbo
from polyreward.rm.model import RewardModel, last_token_index, named_reward

HEADS_FILE = "vpl_heads.pt"
#: Initial ``logvar`` bias: small posterior noise at the start, so z carries the context before the KL term
#: pulls it (a sampled z of std 1 around a near-zero mean hides the context and the head learns to ignore z).
INITIAL_LOGVAR = -4.0


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, outputs))


class VPLRewardModel(nn.Module):
    """A :class:`RewardModel` backbone (its pooled features; its own heads are unused) + VPL encoder and head.

    ``latent_dim``: D of z; ``hidden_dim``: width of the pair-encoder and reward-head MLPs (default: H).
    """

    def __init__(self, backbone: RewardModel, latent_dim: int = 8, hidden_dim: int | None = None):
        super().__init__()
        h = backbone.classifier.config.hidden_size
        hidden = hidden_dim or h
        self.backbone, self.latent_dim, self.hidden_dim = backbone, latent_dim, hidden
        self.pair_norm = nn.LayerNorm(2 * h)
        self.pair_encoder = _mlp(2 * h, hidden, hidden)
        self.mean_layer = nn.Linear(hidden, latent_dim)
        self.logvar_layer = nn.Linear(hidden, latent_dim)
        self.reward_head = _mlp(h + latent_dim, hidden, 1)
        nn.init.constant_(self.logvar_layer.bias, INITIAL_LOGVAR)

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def features(
        self, prompts: Sequence[Any], completions: Sequence[Any], max_length: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(last[N, H], mean[N, H])`` (float32): the backbone's last hidden state at each text's last real
        token (what the reward head reads) and averaged over its real tokens (what the encoder reads, as in
        the VPL code's context embeddings), one forward pass over N (prompt, completion) texts."""
        ids, mask = self.backbone.encode(self.backbone.texts(prompts, completions), max_length)
        hidden = self.backbone.classifier.base_model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        last = hidden[torch.arange(hidden.shape[0], device=hidden.device), last_token_index(mask)]
        m = mask.to(hidden.dtype)[..., None]
        return last, (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)

    def pair_features(
        self, pairs: Sequence[PreferencePair], max_length: int | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(last_chosen, last_rejected, mean_chosen, mean_rejected)``, each ``[N, H]``, in one pass over 2N texts."""
        prompts, n = [p.prompt for p in pairs], len(pairs)
        last, mean = self.features(prompts * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs], max_length)
        return last[:n], last[n:], mean[:n], mean[n:]

    def posterior(self, f_chosen: Tensor, f_rejected: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``q(z | context)``: ``f_*[U, C, H]`` (C context pairs per user, ``mask[U, C]`` marks real ones) ->
        ``(mean[U, D], logvar[U, D])``. The pooling is a (masked) mean, so the order of the pairs is irrelevant."""
        # [f_c - f_r; f_c + f_r] is a fixed linear map of the paper's [f_c; f_r]; the LayerNorm rescales the
        # (initially tiny) chosen-minus-rejected part so the encoder sees the preference direction early.
        e = self.pair_encoder(self.pair_norm(torch.cat([f_chosen - f_rejected, f_chosen + f_rejected], -1)))
        m = torch.ones(e.shape[:2], device=e.device) if mask is None else mask.to(e.dtype)
        pooled = (e * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
        return self.mean_layer(pooled), self.logvar_layer(pooled)

    def reward(self, features: Tensor, z: Tensor) -> Tensor:
        """``r(x, y, z)``: ``features[U, T, H]``, ``z[U, D]`` -> ``[U, T]``."""
        zz = z[:, None, :].expand(-1, features.shape[1], -1)
        return self.reward_head(torch.cat([features, zz], -1)).squeeze(-1)

    def user_latent(self, context: Sequence[PreferencePair], max_length: int | None = None) -> tuple[Tensor, Tensor]:
        """``(mean[D], logvar[D])`` of one user's posterior from their labelled pairs (no gradients)."""
        if not context:
            raise ValueError("a VPL user latent needs at least one labelled context pair")
        with _evaluating(self):
            _, _, fc, fr = self.pair_features(context, max_length)
            mean, logvar = self.posterior(fc[None], fr[None])
        return mean[0], logvar[0]

    def score(self, prompts: Sequence[Any], completions: Sequence[Any], z: Tensor, batch_size: int = 16) -> Tensor:
        """``[N]`` rewards ``r(x, y, z)`` of N (prompt, completion) pairs for one user latent ``z[D]``."""
        out = []
        with _evaluating(self):
            for i in range(0, len(prompts), batch_size):
                f, _ = self.features(prompts[i : i + batch_size], completions[i : i + batch_size])
                out.append(self.reward(f[None], z[None].to(f.device))[0])
        return torch.cat(out) if out else torch.zeros(0)

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """The backbone as a reward-model directory, plus ``vpl_heads.pt`` (encoder and reward head)."""
        path = Path(path)
        meta = {"kind": "vpl", "latent_dim": self.latent_dim, "hidden_dim": self.hidden_dim, **(extra or {})}
        self.backbone.save(path, extra=meta)
        heads = {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}
        torch.save(heads, path / HEADS_FILE)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> VPLRewardModel:
        path = Path(path)
        if not (path / HEADS_FILE).is_file():
            raise FileNotFoundError(f"{path}: not a VPL reward model (no {HEADS_FILE})")
        meta = json.loads((path / "polyreward_rm.json").read_text())
        model = cls(RewardModel.load(path, device), meta["latent_dim"], meta["hidden_dim"]).to(device)
        missing, unexpected = model.load_state_dict(torch.load(path / HEADS_FILE, map_location=device), strict=False)
        bad = [k for k in missing if not k.startswith("backbone.")] + list(unexpected)
        if bad:
            raise ValueError(f"{path / HEADS_FILE}: does not match the VPL heads (keys {bad})")
        return model.eval()


class _evaluating:
    """``with _evaluating(model):`` eval mode and no gradients; the previous mode is restored."""

    def __init__(self, model: nn.Module):
        self.model, self.was_training = model, model.training
        self.no_grad = torch.no_grad()

    def __enter__(self):
        self.model.eval()
        self.no_grad.__enter__()

    def __exit__(self, *exc):
        self.no_grad.__exit__(*exc)
        self.model.train(self.was_training)


# ---------------------------------------------------------------- training


def _user_batch(
    model: VPLRewardModel, users: list[list[PreferencePair]], context: list[list[PreferencePair]], max_length: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One forward pass for U users: ``(f_c[U, C, H], f_r[U, C, H], g_c[U, T, H], g_r[U, T, H])``: the
    encoder's (token-mean) features of the context pairs and the reward head's (last-token) features of the
    target pairs (every user has C context and T target pairs)."""
    flat = [p for pairs in context for p in pairs] + [p for pairs in users for p in pairs]
    last_c, last_r, mean_c, mean_r = model.pair_features(flat, max_length)
    n_ctx, u = sum(len(c) for c in context), len(users)
    shape = lambda t: t.reshape(u, -1, t.shape[-1])  # noqa: E731
    return shape(mean_c[:n_ctx]), shape(mean_r[:n_ctx]), shape(last_c[n_ctx:]), shape(last_r[n_ctx:])


def vpl_step(
    model: VPLRewardModel,
    targets: list[list[PreferencePair]],
    context: list[list[PreferencePair]],
    beta: float,
    max_length: int,
) -> tuple[Tensor, dict[str, float]]:
    """Minus the mean per-user ELBO divided by T (so the loss is per target pair) and the step's metrics.

    Dividing the whole ELBO by T keeps the paper's ratio of likelihood to ``beta * KL``.
    """
    fc, fr, gc, gr = _user_batch(model, targets, context, max_length)
    mean, logvar = model.posterior(fc, fr)
    z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
    delta = model.reward(gc, z) - model.reward(gr, z)
    kl = gaussian_kl(mean, logvar)
    elbo = vpl_elbo(delta, kl, beta)
    loss = -(elbo / delta.shape[1]).mean()
    metrics = {
        "loss/rm": float(loss.detach()),
        "loss/kl": float(kl.detach().mean()),
        "rm/accuracy": float((delta.detach() > 0).float().mean()),
        "vpl/logvar_mean": float(logvar.detach().mean()),
    }
    return loss, metrics


def sample_user_batch(
    users: Mapping[str, list[PreferencePair]], names: list[str], n_context: int, rng: random.Random
) -> tuple[list[list[PreferencePair]], list[list[PreferencePair]]]:
    """For each named user: ``n_context`` context pairs and ``n_context`` other target pairs, drawn at random
    (a user with fewer than ``2 * n_context`` pairs reuses pairs, with replacement)."""
    context, targets = [], []
    for name in names:
        pairs = users[name]
        if len(pairs) >= 2 * n_context:
            drawn = rng.sample(pairs, 2 * n_context)
        else:
            drawn = [rng.choice(pairs) for _ in range(2 * n_context)]
        context.append(drawn[:n_context])
        targets.append(drawn[n_context:])
    return context, targets


def fit_vpl(
    model: VPLRewardModel,
    train: Sequence[PreferencePair],
    *,
    epochs: int,
    users_per_step: int,
    n_context: int,
    beta: float,
    learning_rate: float,
    seed: int = 0,
    max_length: int = 512,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    log=None,
    evaluate=None,
) -> VPLRewardModel:
    """Train on pairs with users; an epoch visits every user once (in batches of ``users_per_step``).

    evaluate: ``f(model) -> metrics`` called after every epoch (logged with ``log``).
    """
    users = users_of(train)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    names, step = list(users), 0
    model.train()
    for epoch in range(epochs):
        rng.shuffle(names)
        for start in range(0, len(names), users_per_step):
            context, targets = sample_user_batch(users, names[start : start + users_per_step], n_context, rng)
            loss, metrics = vpl_step(model, targets, context, beta, max_length)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            step += 1
            if log is not None:
                log.log(step, {**metrics, "charts/epoch": epoch + min(start + users_per_step, len(names)) / len(names)})
        if evaluate is not None and log is not None:
            log.log(step, evaluate(model))
    return model


# ---------------------------------------------------------------- evaluation and inference


def user_accuracy(
    model: VPLRewardModel, pairs: Sequence[PreferencePair], n_context: int, max_length: int = 512
) -> dict[str, float]:
    """Held-out accuracy per user: each user's first ``n_context`` pairs are the context (``z`` = posterior
    mean), the rest are scored. Users with no pair beyond the context are skipped. ``{user: fraction}``."""
    out = {}
    for user, own in users_of(pairs).items():
        if len(own) <= n_context:
            continue
        mean, _ = model.user_latent(own[:n_context], max_length)
        rest = own[n_context:]
        prompts = [p.prompt for p in rest]
        chosen = model.score(prompts, [p.chosen for p in rest], mean)
        rejected = model.score(prompts, [p.rejected for p in rest], mean)
        out[user] = float(((chosen > rejected).float() + 0.5 * (chosen == rejected).float()).mean())
    return out


def accuracy_summary(per_user: Mapping[str, float], user_types: Mapping[str, str] | None = None) -> dict[str, float]:
    """``eval/accuracy/reward`` (mean over users) and, with ``user_types``, ``eval/accuracy/<type>``."""
    if not per_user:
        raise ValueError("no user has a held-out pair beyond its context pairs")
    out = {"eval/accuracy/reward": sum(per_user.values()) / len(per_user)}
    for kind in sorted(set((user_types or {}).values())):
        values = [a for u, a in per_user.items() if user_types.get(u) == kind]
        if values:
            out[f"eval/accuracy/{kind}"] = sum(values) / len(values)
    return out


def vpl_reward_function(
    model: VPLRewardModel | str | Path,
    context: Sequence[PreferencePair],
    *,
    name: str = "vpl_reward",
    batch_size: int = 16,
    device: str | torch.device = "cpu",
):
    """A reward function ``f(prompts, completions, **kw) -> list[float]`` for the user whose labelled pairs
    are ``context``: ``r(x, y, z)`` with ``z`` the posterior mean. Carries ``.model`` and ``.z``."""
    vpl = model if isinstance(model, VPLRewardModel) else VPLRewardModel.load(model, device)
    z, _ = vpl.user_latent(context)
    reward = named_reward(name, vpl, lambda prompts, completions: vpl.score(prompts, completions, z, batch_size))
    reward.z = z  # type: ignore[attr-defined]
    return reward


# ---------------------------------------------------------------- ``polyreward rm train`` with ``kind: vpl``


def load_user_data(config) -> tuple[GeneratedUsers | PairSet, GeneratedUsers | PairSet]:
    """(train, held-out) pairs with users for an :class:`~polyreward.rm.config.RMConfig` of ``kind="vpl"``.

    ``synthetic``: :func:`~polyreward.rm.data.user_pairs` with ``2 * vpl_context_pairs`` pairs per user,
    ``synthetic_size`` pairs in all, from a pool of ``synthetic_size // 4`` distinct conflict pairs; the held-out
    users (``eval_data: synthetic``, or ``""`` with synthetic training data) have their own pool and seed.
    Files need ``user_column``; ``eval_data: ""`` with a file holds out ``eval_fraction`` of the users.
    """
    per_user = 2 * config.vpl_context_pairs
    n_users = max(2, config.synthetic_size // per_user)

    def synthetic(seed: int, prefix: str) -> GeneratedUsers:
        pool = max(per_user, config.synthetic_size // 4)
        return user_pairs(n_users, per_user, pool_size=pool, seed=seed, prefix=prefix)

    columns = dict(
        prompt_column=config.prompt_column,
        chosen_column=config.chosen_column,
        rejected_column=config.rejected_column,
        on_invalid=config.on_invalid,
        user_column=config.user_column,
    )
    train = synthetic(config.seed, "user") if config.train_data == "synthetic" else load_pairs(config.train_data, **columns)
    if config.eval_data == "synthetic" or (config.eval_data == "" and config.train_data == "synthetic"):
        return train, synthetic(config.seed + 1_000_003, "heldout")
    if config.eval_data:
        return train, load_pairs(config.eval_data, **columns)
    names = list(users_of(train.pairs))
    random.Random(config.seed).shuffle(names)
    n_eval = round(config.eval_fraction * len(names))
    if not 0 < n_eval < len(names):
        raise ValueError(f"eval_fraction={config.eval_fraction} leaves no users on one side of {len(names)} users")
    held = set(names[:n_eval])
    part = lambda keep: PairSet([p for p in train.pairs if (p.user in held) == keep], train.objectives, train.source)  # noqa: E731
    return part(False), part(True)


def train_vpl(config, log) -> tuple[VPLRewardModel, dict[str, Any]]:
    """Train a :class:`VPLRewardModel` from ``config`` (``kind="vpl"``; ``batch_size`` counts users per step);
    returns it and its held-out metrics (per-user accuracy, mean over users and per user type)."""
    from polyreward.lm.model import resolve_model_path

    train, held_out = load_user_data(config)
    types = {**getattr(train, "user_types", {}), **getattr(held_out, "user_types", {})}
    train_pairs, held_pairs = (getattr(d, "pairs", d).pairs for d in (train, held_out))
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[config.dtype]
    backbone = RewardModel.from_backbone(resolve_model_path(config.model), ("reward",), dtype=dtype, seed=config.seed)
    if config.freeze_backbone:
        backbone.requires_grad_(False)
    elif config.freeze_embeddings:
        backbone.classifier.get_input_embeddings().weight.requires_grad_(False)
    torch.manual_seed(config.seed)
    model = VPLRewardModel(backbone, config.vpl_latent_dim).to(config.device)
    c = config.vpl_context_pairs

    def evaluate(m: VPLRewardModel) -> dict[str, float]:
        return accuracy_summary(user_accuracy(m, held_pairs, c, config.max_length), types)

    fit_vpl(
        model,
        train_pairs,
        epochs=config.epochs,
        users_per_step=config.batch_size,
        n_context=c,
        beta=config.vpl_kl_weight,
        learning_rate=config.learning_rate,
        seed=config.seed,
        max_length=config.max_length,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        log=log,
    )
    result = {"train_pairs": len(train_pairs), "held_out_pairs": len(held_pairs), **evaluate(model)}
    log.log(-(-len(users_of(train_pairs)) // config.batch_size) * config.epochs, result)
    return model, result
