"""verl 0.9.1: polyreward estimators in verl's advantage-estimator registry, and a reward manager that
keeps the named reward vector.

Data flow inside verl's trainer (see docs/integrations/verl.md):

1. **Reward loop worker** (a Ray actor): :class:`PolyrewardRewardManager` scores one sample with a
   polyreward ``RewardSet`` and returns ``reward_score`` (the weighted sum, which verl puts on the last
   response token) and ``reward_extra_info`` with one entry per named component
   (``polyreward/<name>``) and its weight (``polyreward_weight/<name>``).
2. **Trainer process**: verl stores the extra info in ``DataProto.non_tensor_batch`` (legacy trainer)
   and calls ``compute_advantage``. The adapters registered by :func:`register_with_verl` rebuild the
   ``[N, K]`` :class:`RewardBatch` from those entries (or, without them, from ``token_level_rewards``
   summed over tokens, K = 1), call ``polyreward.advantages.compute`` and return token-level
   ``(advantages, returns)`` of shape ``[B, T]``, as verl's own estimators do.

verl is imported only inside the functions here; a missing verl is an ImportError saying how to install it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polyreward import advantages
from polyreward.batch import RewardBatch
from polyreward.rewards.reward_set import RewardSet, ScoredRewards

COMPONENT_KEY = "polyreward/"  # reward_extra_info / non_tensor_batch key prefix of each named component
WEIGHT_KEY = "polyreward_weight/"  # ... and of its weight at this step (the same for every sample)
PARAMS_KEY = "polyreward_params"  # algorithm.<this>: keyword parameters of the polyreward estimator
BUDGET_KEY = "budget"  # a dataset column copied into RewardBatch.budgets when present (hbpo)
# Estimators whose inputs verl's compute_advantage cannot supply, and why.
UNSUPPORTED = {
    "gae": "needs environment steps and critic values; use verl's own 'gae'",
    "multi_critic": "needs environment steps and one critic per reward",
    "dual_level": "needs per-turn rewards, which verl's reward loop does not produce",
}

_DATA: contextvars.ContextVar[Any] = contextvars.ContextVar("polyreward_verl_data", default=None)
_ADAPTERS: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {}  # one function per name: re-registering is a no-op


def _import_verl(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"polyreward.integrations.verl needs verl ({module} failed to import: {err}). verl 0.9.1 pins "
            "transformers<5.11, so install it in its own environment: scripts/verl_env.sh (creates .venv-verl)"
        ) from err


# ---------------------------------------------------------------------------------------------- estimators
def register_with_verl(
    names: Iterable[str] | None = None, prefix: str = "polyreward_", pass_reward_info: bool = True
) -> list[str]:
    """Register polyreward estimators in verl's registry as ``<prefix><name>``; returns the verl names.

    names: polyreward estimator names; default: every registered one verl can feed (not ``UNSUPPORTED``).
    pass_reward_info: wrap verl's ``compute_advantage`` (``verl.trainer.ppo.ray_trainer`` and
        ``verl.trainer.ppo.v1.utils``) so that the adapters see the ``DataProto`` it was called with.
        verl hands ``non_tensor_batch`` only to an estimator named exactly ``"gdpo"``; without this the
        named components cannot reach any other name and every estimator sees K = 1.
    Safe to call again (in every process that imports a user's reward module): the same function
    objects are registered each time, which verl's registry accepts.
    """
    core_algos = _import_verl("verl.trainer.ppo.core_algos")
    chosen = [n for n in advantages.names() if n not in UNSUPPORTED] if names is None else list(names)
    for name in chosen:
        advantages.get(name)  # KeyError naming close matches
        if name in UNSUPPORTED:
            raise ValueError(f"register_with_verl: estimator {name!r} {UNSUPPORTED[name]}")
    registered = []
    for name in chosen:
        verl_name = prefix + name
        fn = _ADAPTERS.setdefault(verl_name, _adapter(name, verl_name))
        core_algos.register_adv_est(verl_name)(fn)
        registered.append(verl_name)
    if pass_reward_info:
        _pass_data_to_estimators()
    return registered


def _adapter(name: str, verl_name: str) -> Callable[..., tuple[Tensor, Tensor]]:
    def estimator(
        token_level_rewards: Tensor,
        response_mask: Tensor,
        index: np.ndarray | None = None,
        config: Any = None,
        non_tensor_batch: Mapping[str, Any] | None = None,
        **_unused: Any,  # reward_baselines, batch, ...: verl passes them to every estimator; ours do not use them
    ) -> tuple[Tensor, Tensor]:
        """verl's estimator signature -> ``(advantages[B, T], returns[B, T])``, both the sample advantage
        times ``response_mask`` (outcome-only, as verl's GRPO)."""
        if non_tensor_batch is None:
            data = _DATA.get()
            non_tensor_batch = None if data is None else data.non_tensor_batch
        batch = reward_batch_from_verl(token_level_rewards, response_mask, index, non_tensor_batch)
        if batch.names != ("reward",) and _get(config, "use_kl_in_reward", False):
            raise ValueError(
                f"{verl_name}: algorithm.use_kl_in_reward puts the KL penalty into token_level_rewards, but the "
                "advantages come from the named reward components, which do not have it; use the actor's KL loss"
            )
        params = _plain(_get(config, PARAMS_KEY, None) or {})
        result = advantages.compute(name, batch, **params)
        if result.level != "sample":
            raise ValueError(f"{verl_name}: gives {result.level}-level advantages; verl needs one per sample")
        adv = result.advantages.to(token_level_rewards.dtype)[:, None] * response_mask
        return adv, adv

    estimator.__name__ = estimator.__qualname__ = f"polyreward_{name}_for_verl"
    estimator.__doc__ = f"polyreward's {name!r} estimator with verl's signature.\n\n" + (estimator.__doc__ or "")
    return estimator


def reward_batch_from_verl(
    token_level_rewards: Tensor,
    response_mask: Tensor,
    index: np.ndarray | None,
    non_tensor_batch: Mapping[str, Any] | None,
) -> RewardBatch:
    """verl's estimator inputs -> :class:`RewardBatch`.

    token_level_rewards, response_mask: ``[B, T]``. index: ``[B]`` group ids (verl's ``uid`` strings) or None
    (one group). non_tensor_batch: ``polyreward/<name>`` arrays ``[B]`` give the ``[B, K]`` rewards (NaN =
    not applicable) and ``polyreward_weight/<name>`` their weights; without them the single reward
    ``"reward"`` is ``token_level_rewards.sum(-1)``. A ``budget`` column fills ``budgets``.
    """
    n = token_level_rewards.shape[0]
    extra = dict(non_tensor_batch or {})
    names = [k[len(COMPONENT_KEY) :] for k in extra if k.startswith(COMPONENT_KEY)]
    device, dtype = token_level_rewards.device, token_level_rewards.dtype
    if names:
        columns = [_column(extra, COMPONENT_KEY + name, n) for name in names]
        rewards = torch.tensor(np.stack(columns, axis=1), dtype=dtype, device=device)
        weights = [float(_column(extra, WEIGHT_KEY + name, n)[0]) if WEIGHT_KEY + name in extra else 1.0 for name in names]
    else:
        rewards, names, weights = token_level_rewards.sum(-1, keepdim=True), ["reward"], None
    budgets = _column(extra, BUDGET_KEY, n) if BUDGET_KEY in extra else None
    return RewardBatch(
        rewards=rewards,
        names=names,
        group_ids=None if index is None else torch.as_tensor(_dense_ids(index), device=device),
        weights=weights,
        response_mask=response_mask.bool(),
        budgets=budgets,
    )


def _column(extra: Mapping[str, Any], key: str, n: int) -> np.ndarray:
    values = np.asarray([math.nan if v is None else v for v in extra[key]], dtype=np.float64)
    if values.shape != (n,):
        raise ValueError(f"non_tensor_batch[{key!r}]: expected {n} values (one per sample), got shape {values.shape}")
    return values


def _dense_ids(index: Iterable[Any]) -> list[int]:
    """verl's ``uid`` values (strings) -> ``0..G-1`` in order of first appearance."""
    seen: dict[Any, int] = {}
    return [seen.setdefault(uid, len(seen)) for uid in index]


def _get(config: Any, key: str, default: Any) -> Any:
    return default if config is None else config.get(key, default)


def _plain(params: Any) -> dict[str, Any]:
    """An OmegaConf node (verl's configs) -> plain Python containers, so ``Literal`` checks and lists work."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(params):
            return dict(OmegaConf.to_container(params, resolve=True))
    except ImportError:
        pass
    return dict(params)


def _pass_data_to_estimators() -> None:
    """Wrap verl's ``compute_advantage`` so the adapters can read ``data.non_tensor_batch``.

    The wrapper only records ``data`` for the duration of the call and then runs verl's own function,
    so every estimator, ours or verl's, runs exactly as before.
    """
    ray_trainer = _import_verl("verl.trainer.ppo.ray_trainer")
    modules = [ray_trainer]
    try:
        from verl.trainer.ppo.v1 import utils as v1_utils  # the v1 trainer imports it by name

        modules.append(v1_utils)
    except ImportError:  # pragma: no cover - the v1 trainer's optional dependencies
        pass
    for module in modules:
        original = module.compute_advantage
        if getattr(original, "_polyreward_wrapped", False):
            continue

        @functools.wraps(original)
        def compute_advantage(data: Any, *args: Any, _original: Callable = original, **kwargs: Any) -> Any:
            token = _DATA.set(data)
            try:
                return _original(data, *args, **kwargs)
            finally:
                _DATA.reset(token)

        compute_advantage._polyreward_wrapped = True  # type: ignore[attr-defined]
        module.compute_advantage = compute_advantage


# ---------------------------------------------------------------------------------------------- rewards
def score_dataproto(reward_set: RewardSet, data: Any, tokenizer: Any, step: int = 0) -> ScoredRewards:
    """Score every sample of a verl ``DataProto`` with ``reward_set``.

    Reads ``batch["prompts"]`` ``[B, P]`` (left-padded), ``batch["responses"]`` ``[B, R]`` and
    ``batch["attention_mask"]`` ``[B, P + R]``; decodes prompt and response with ``tokenizer``. Reward
    functions get ``prompts``, ``completions`` and the columns ``ground_truth``, ``data_source``,
    ``extra_info`` (verl's dataset fields) and ``uid`` when present. Group ids follow ``uid``.
    """
    prompts_ids, responses = data.batch["prompts"], data.batch["responses"]
    mask = data.batch["attention_mask"]
    prompt_len = prompts_ids.shape[1]
    prompts, completions = [], []
    for i in range(len(data)):
        prompt_ids = prompts_ids[i][mask[i, :prompt_len].bool()]
        response_ids = responses[i][: int(mask[i, prompt_len:].sum())]
        prompts.append(tokenizer.decode(prompt_ids, skip_special_tokens=True))
        completions.append(tokenizer.decode(response_ids, skip_special_tokens=True))
    ntb = data.non_tensor_batch
    columns: dict[str, Any] = {}
    if "reward_model" in ntb:
        columns["ground_truth"] = [r.get("ground_truth") for r in ntb["reward_model"]]
    for key in ("data_source", "extra_info", "uid"):
        if key in ntb:
            columns[key] = list(ntb[key])
    group_ids = _dense_ids(ntb["uid"]) if "uid" in ntb else None
    return reward_set.score(prompts, completions, group_ids=group_ids, step=step, **columns)


def reward_extra_info(scored: ScoredRewards) -> dict[str, list[float]]:
    """One list per named component (NaN = not applicable) and per weight: what the estimator adapters read."""
    batch = scored.batch
    info = {COMPONENT_KEY + name: batch.rewards[:, k].tolist() for k, name in enumerate(batch.names)}
    info.update({WEIGHT_KEY + name: [float(batch.weights[k])] * batch.num_samples for k, name in enumerate(batch.names)})
    return info


def reward_scores(scored: ScoredRewards) -> list[float]:
    """The scalar verl sees per sample: ``sum_k w_k r_k`` over the rewards that apply (0 where none applies)."""
    return torch.nan_to_num(scored.batch.weighted_sum(), nan=0.0).tolist()


def _reward_manager_base() -> type:
    return _import_verl("verl.experimental.reward_loop.reward_manager.base").RewardManagerBase


def __getattr__(attr: str) -> Any:
    """``PolyrewardRewardManager`` subclasses verl's class, so it is built on first access (lazy verl import)."""
    if attr == "PolyrewardRewardManager":
        cls = _build_reward_manager()
        globals()[attr] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def _build_reward_manager() -> type:
    base = _reward_manager_base()
    registry = _import_verl("verl.experimental.reward_loop.reward_manager")

    class PolyrewardRewardManager(base):  # type: ignore[misc, valid-type]
        """verl reward-loop manager that scores with a polyreward ``RewardSet``.

        Subclass it with ``reward_set = RewardSet([...])`` in your reward module, and point verl's
        ``reward.reward_manager`` (``source=importlib``) at that subclass; or use the registered name
        ``"polyreward"`` with ``reward.custom_reward_function`` naming a ``RewardSet`` object. ``run_single`` (what verl's
        reward loop calls, one sample at a time) returns ``{"reward_score": float, "reward_extra_info":
        {"polyreward/<name>": value, "polyreward_weight/<name>": w}}``; verl's
        ``assemble_rm_scores`` puts the score on the last response token. Calling the manager on a whole
        ``DataProto`` returns ``{"reward_tensor": [B, R], "reward_extra_info": {key: list}}`` as verl's
        batch managers do. Failure policies and weight schedules are the reward set's; the step is
        ``data.meta_info["global_steps"]`` when verl sets it, else 0.
        """

        reward_set: RewardSet | None = None

        def __init__(self, config: Any, tokenizer: Any, compute_score: Any = None, **kwargs: Any):
            super().__init__(config, tokenizer, compute_score)
            if self.reward_set is None:  # registered name "polyreward": the RewardSet is verl's custom reward function
                fn = compute_score.args[0] if isinstance(compute_score, functools.partial) else compute_score
                if not isinstance(fn, RewardSet):
                    raise TypeError(
                        f"{type(self).__name__}: no RewardSet: subclass it with reward_set = RewardSet([...]), or point "
                        f"reward.custom_reward_function at a RewardSet object (got {type(fn).__name__})"
                    )
                self.reward_set = fn

        def _scored(self, data: Any) -> ScoredRewards:
            step = int(data.meta_info.get("global_steps", 0) or 0)
            return score_dataproto(self.reward_set, data, self.tokenizer, step=max(step, 0))

        async def run_single(self, data: Any) -> dict[str, Any]:
            # the running loop, not self.loop: verl's reward loop awaits this from its own event loop
            scored = await asyncio.get_running_loop().run_in_executor(None, self._scored, data[-1:])
            info = {key: values[0] for key, values in reward_extra_info(scored).items()}
            return {"reward_score": reward_scores(scored)[0], "reward_extra_info": info}

        def __call__(self, data: Any, return_dict: bool = False) -> Tensor | dict[str, Any]:
            scored = self._scored(data)
            reward_tensor = self.assemble_rm_scores(data, reward_scores(scored))
            if not return_dict:
                return reward_tensor
            return {"reward_tensor": reward_tensor, "reward_extra_info": reward_extra_info(scored)}

    registry.register("polyreward")(PolyrewardRewardManager)
    return PolyrewardRewardManager
