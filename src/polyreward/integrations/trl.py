"""TRL's ``GRPOTrainer`` driven by a polyreward ``RewardSet`` and any registered advantage estimator.

TRL keeps generation (transformers or vLLM), the clipped loss, accelerate / DeepSpeed and logging.
Per generation batch, in data-flow order: ``_calculate_rewards`` scores with the reward set and
gathers one ``RewardBatch`` over every process; ``_generate_and_score_completions`` replaces TRL's
advantages by ``advantages.compute(estimator, batch)`` (this process's rows, spread over each turn's
tokens for turn-level estimators); ``_compute_loss`` applies TRL's loss once per advantage channel
(HDPO) from one forward pass; reward and ``diag/`` metrics go to TRL's ``_metrics``.
See docs/integrations/trl.md for what is exact and what is not.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from trl import GRPOTrainer

from polyreward import advantages
from polyreward.advantages.registry import AdvantageResult
from polyreward.batch import RewardBatch
from polyreward.diagnostics import diagnose
from polyreward.groups import group_mean_std
from polyreward.lm.multiturn import turn_advantages_to_tokens
from polyreward.rewards.component import RewardError
from polyreward.rewards.reward_set import RewardSet, ScoredRewards

logger = logging.getLogger(__name__)

TurnRewardFn = Callable[..., Sequence[Sequence[float | None]]]
_COUNTED = ("/abstained", "/fallback")  # reward-set metrics summed (not averaged) over processes
# How TRL 1.16's loss types normalize (GRPOTrainer._compute_loss): by tokens, or by the micro-batch's sequences.
_TOKEN_NORMALIZED = ("bnpo", "dapo", "cispo", "vespo")
_SEQUENCE_NORMALIZED = ("grpo", "sapo", "dr_grpo", "luspo")


def token_turns(ids: Sequence[int], model_mask: Sequence[int] | None, separator_id: int | None) -> list[int]:
    """The turn each completion token belongs to, -1 for tokens the model did not write.

    A turn is a run of model tokens (``model_mask`` 1; TRL's ``tool_mask`` is 0 on tool output)
    and, with ``separator_id``, ends after each separator token (which belongs to the turn it ends).
    ``ids=[5, 9, 6, 7, 8]``, ``model_mask=[1, 1, 1, 0, 1]``, ``separator_id=9`` -> ``[0, 0, 1, -1, 2]``.
    """
    mask = [1] * len(ids) if model_mask is None else model_mask
    out, turn, open_turn = [], -1, False
    for token, own in zip(ids, mask, strict=True):
        if not own:
            out.append(-1)
            open_turn = False
            continue
        if not open_turn:
            turn, open_turn = turn + 1, True
        out.append(turn)
        open_turn = open_turn and token != separator_id
    return out


def _turn_rows(turn_rewards: Sequence[Sequence[float | None]], turn_counts: list[int]) -> Tensor:
    """``turn_reward``'s output -> ``[n, T]`` float, NaN where a sample has no such turn."""
    if len(turn_rewards) != len(turn_counts):
        raise ValueError(f"turn_reward returned {len(turn_rewards)} rows for {len(turn_counts)} completions")
    width = max([1, *turn_counts])
    out = torch.full((len(turn_counts), width), float("nan"))
    for i, (values, count) in enumerate(zip(turn_rewards, turn_counts, strict=True)):
        if len(values) != count:
            raise ValueError(f"turn_reward: sample {i} has {count} turns but {len(values)} rewards (one per turn)")
        out[i, :count] = torch.tensor([float("nan") if v is None else float(v) for v in values])
    return out


class _ScoredByRewardSet:
    """Stands in TRL's ``reward_funcs`` so that TRL's names and logs follow the reward set; never called."""

    def __init__(self, name: str):
        self.__name__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> list[float]:
        raise RuntimeError(f"reward {self.__name__!r} is scored by the RewardSet in PolyrewardGRPOTrainer")


class PolyrewardGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose rewards come from ``reward_set`` and advantages from ``estimator``.

    reward_set: the K reward components (policies, schedules, executors); replaces ``reward_funcs``.
    estimator, estimator_params: a registered estimator (``polyreward.advantages.names()``) and its
        keyword parameters, checked here. TRL's ``scale_rewards`` / ``multi_objective_aggregation``
        then only shape TRL's own (discarded) advantages and its ``reward_std`` / ``frac_reward_zero_std``.
    budget_column: dataset column copied into ``RewardBatch.budgets`` when present (HBPO).
    turn_reward: ``fn(prompts, completions, turns=..., **columns) -> list[list[float | None]]``, one
        reward per turn, filling ``RewardBatch.turn_rewards`` (``dual_level``). Turns are runs of model
        tokens between tool outputs (TRL tools / environments / ``rollout_func``'s ``env_mask``), split
        after every ``turn_separator`` token; ``turns`` (the decoded text of each turn) also reaches
        the reward set's functions. Failures of ``turn_reward`` raise.
    diagnostics: log ``diag/...`` metrics every generation batch.
    Every other keyword goes to ``GRPOTrainer`` unchanged. ``reward_batch`` and ``advantage_result``
    hold the latest gathered batch and estimator result.
    """

    def __init__(
        self,
        model: Any,
        reward_set: RewardSet,
        *,
        estimator: str = "grpo",
        estimator_params: dict[str, Any] | None = None,
        budget_column: str = "budget",
        turn_reward: TurnRewardFn | None = None,
        turn_separator: str | None = None,
        diagnostics: bool = True,
        args: Any = None,
        **trl_kwargs: Any,
    ):
        if "reward_funcs" in trl_kwargs:
            raise TypeError("PolyrewardGRPOTrainer: rewards come from reward_set; do not pass reward_funcs")
        if args is not None and args.reward_weights is not None:
            raise ValueError("PolyrewardGRPOTrainer: weights live on the RewardSet, not in GRPOConfig.reward_weights")
        self.estimator, self.estimator_params = estimator, dict(estimator_params or {})
        _check_estimator(estimator, self.estimator_params)
        if turn_separator is not None and turn_reward is None:
            raise ValueError("PolyrewardGRPOTrainer: turn_separator splits turns for turn_reward; give turn_reward too")
        placeholders = [_ScoredByRewardSet(name) for name in reward_set.names]
        super().__init__(model, reward_funcs=placeholders, args=args, **trl_kwargs)
        if len(self.reward_funcs) != len(placeholders):
            raise ValueError(
                "PolyrewardGRPOTrainer: an environment_factory with get_reward adds a reward TRL would score itself; "
                "add it to the RewardSet instead (a component reading the `environments` column)"
            )
        self.reward_set, self.budget_column, self.diagnostics = reward_set, budget_column, diagnostics
        self.turn_reward, self.separator_id = turn_reward, self._token_id(turn_separator)
        self.reward_batch: RewardBatch | None = None
        self.advantage_result: AdvantageResult | None = None
        self._scored: ScoredRewards | None = None
        self._tool_masks: list[list[int]] | None = None
        self._token_turn: list[list[int]] | None = None
        self._channels: list[tuple[str, float]] = []
        self._shared_forward: dict[str, Any] | None = None

    def _token_id(self, text: str | None) -> int | None:
        ids = [] if text is None else self._tokenizer.encode(text, add_special_tokens=False)
        if text is not None and len(ids) != 1:
            raise ValueError(f"turn_separator {text!r} must be exactly one token, the tokenizer gives {ids}")
        return ids[0] if ids else None

    # ------------------------------------------------------------------ 1. rewards -> RewardBatch
    def _generate(self, prompts: list) -> tuple:
        out = super()._generate(prompts)
        self._tool_masks = out[2]  # model tokens 1, tool / environment tokens 0 (None without tools)
        return out

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list) -> Tensor:
        """Score with the reward set; returns TRL's gathered ``rewards_per_func[N, K]`` (float32)."""
        columns = self._reward_columns(inputs, completion_ids_list)
        turn_texts = self._split_turns(completion_ids_list)
        if turn_texts is not None:
            columns["turns"] = turn_texts
        self._scored = self._score(prompts, completions, columns)
        rewards = self._gather(self._scored.batch.rewards.float())
        if self._scored.failures:
            logger.warning("%s (%d failures handled by policy)", self._scored.failures[0], len(self._scored.failures))
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        lengths = self._gather(torch.tensor([len(ids) for ids in completion_ids_list]))
        self.reward_batch = RewardBatch(
            rewards=rewards,
            names=self.reward_set.names,
            group_ids=torch.arange(len(rewards), device=rewards.device) // group_size,
            weights=self._scored.batch.weights,
            response_mask=torch.arange(int(lengths.max()), device=lengths.device) < lengths[:, None],
            budgets=self._gather_budgets(inputs),
            turn_rewards=None if turn_texts is None else self._gather_turn_rewards(prompts, completions, columns),
        )
        self.reward_weights = self._scored.batch.weights.float().cpu()  # TRL's logged `reward` uses this step's weights
        return rewards

    def _reward_columns(self, inputs: list[dict], completion_ids_list: list[list[int]]) -> dict[str, Any]:
        """The keyword arguments TRL gives reward functions: dataset columns plus its extras."""
        columns = {k: [x[k] for x in inputs] for k in inputs[0] if k not in ("prompt", "completion", "completion_ids")}
        columns.update(
            completion_ids=completion_ids_list,
            trainer_state=self.state,
            log_extra=self._log_completion_extra,
            log_metric=self._log_metric,
        )
        if self.environments is not None:
            columns["environments"] = self.environments
        return columns

    def _score(self, prompts: list, completions: list, columns: dict[str, Any]) -> ScoredRewards:
        """``RewardSet.score`` at this step; a ``raise`` failure on any process stops every process."""
        error = None
        try:
            scored = self.reward_set.score(prompts, completions, step=self.state.global_step, **columns)
        except RewardError as err:
            error = err
        failed = self._gather(torch.tensor([int(error is not None)]))
        if error is not None:
            raise error
        if failed.any():
            rank = int(torch.nonzero(failed)[0])
            raise RuntimeError(f"a reward with on_error='raise' failed on process {rank}; see that process's error")
        return scored

    def _split_turns(self, completion_ids: list[list[int]]) -> list[list[str]] | None:
        """Token -> turn maps (kept for the loss) and each turn's decoded text, or None without turn_reward."""
        if self.turn_reward is None:
            return None
        masks = self._tool_masks or [None] * len(completion_ids)
        self._token_turn = [token_turns(ids, m, self.separator_id) for ids, m in zip(completion_ids, masks, strict=True)]
        texts = []
        for ids, turn_of in zip(completion_ids, self._token_turn, strict=True):
            count = max(turn_of, default=-1) + 1
            pieces = [[tok for tok, t in zip(ids, turn_of, strict=True) if t == turn] for turn in range(count)]
            texts.append([self._tokenizer.decode(p, skip_special_tokens=True) for p in pieces])
        return texts

    def _gather_turn_rewards(self, prompts: list, completions: list, columns: dict[str, Any]) -> Tensor:
        counts = [len(t) for t in columns["turns"]]
        local = _turn_rows(self.turn_reward(prompts, completions, **columns), counts).to(self.accelerator.device)
        return self._gather(self.accelerator.pad_across_processes(local, dim=1, pad_index=float("nan")))

    def _gather_budgets(self, inputs: list[dict]) -> Tensor | None:
        if self.budget_column not in inputs[0]:
            return None
        return self._gather(torch.tensor([float(x[self.budget_column]) for x in inputs]))

    def _gather(self, tensor: Tensor) -> Tensor:
        """Concatenate every process's rows, in process order (TRL's layout of the generation batch)."""
        return self.accelerator.gather(tensor.to(self.accelerator.device))

    # ------------------------------------------------------------------ 2. advantages
    def _generate_and_score_completions(self, inputs: list[dict]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)  # calls _calculate_rewards above
        result = self._advantages(self.reward_batch)
        rows = slice(self.accelerator.process_index * len(inputs), (self.accelerator.process_index + 1) * len(inputs))
        output["advantages"] = self._loss_advantages(result, rows, output["completion_ids"].shape[1])
        if len(result.channels) > 1:
            output.update(self._channel_fields(result, rows, output))
        self.advantage_result = result
        self._log(result)
        return output

    def _advantages(self, batch: RewardBatch) -> AdvantageResult:
        try:
            return advantages.compute(self.estimator, batch, **self.estimator_params)
        except ValueError as err:
            raise ValueError(
                f"{err} [PolyrewardGRPOTrainer fills budgets from dataset column {self.budget_column!r} and "
                "turn_rewards from turn_reward=...]"
            ) from err

    def _loss_advantages(self, result: AdvantageResult, rows: slice, width: int) -> Tensor:
        """This process's advantages: ``[n]`` per sample, or ``[n, width]`` with each turn's value on its tokens."""
        if result.level == "sample":
            return result.advantages[rows].float()
        if result.level == "turn" and self._token_turn is not None:
            token_turn = torch.tensor(
                [t + [-1] * (width - len(t)) for t in self._token_turn], device=result.advantages.device
            )
            return turn_advantages_to_tokens(result.advantages[rows], token_turn).float()
        raise ValueError(
            f"estimator {self.estimator!r} gives {result.level}-level advantages; PolyrewardGRPOTrainer takes sample-level "
            "ones, and turn-level ones with turn_reward=... (step-level estimators need environment steps)"
        )

    def _channel_fields(self, result: AdvantageResult, rows: slice, output: dict[str, Any]) -> dict[str, Tensor]:
        """Channel advantages ``[n, C]``; for channels after the first, the tokens they cover (all processes)."""
        if result.level != "sample":
            raise ValueError(f"estimator {self.estimator!r}: multi-channel advantages must be sample-level")
        self._channels = [(name, float(result.channel_weights[name])) for name in result.channels]
        stacked = torch.stack([result.channels[name][rows] for name, _ in self._channels], dim=1).float()
        loss_mask = output["completion_mask"] * output.get("tool_mask", 1)
        fields = {"channel_advantages": stacked}
        for c, (name, _) in enumerate(self._channels[1:], start=1):
            fields[f"num_items_in_batch/{name}"] = self._gather(loss_mask[stacked[:, c] != 0].sum()[None]).sum()
        return fields

    # ------------------------------------------------------------------ 3. one loss per channel
    def _compute_loss(self, model, inputs: dict[str, Any]) -> Tensor:
        """TRL's loss, or for multi-channel estimators ``sum_c w_c * TRL_loss(channel c)`` (HDPO)."""
        if "channel_advantages" not in inputs:
            return super()._compute_loss(model, inputs)
        self._shared_forward = {}
        try:
            loss = 0.0
            for c, (name, weight) in enumerate(self._channels):
                channel_inputs, scale = self._channel_inputs(inputs, c, name)
                with self._extra_channel(name, enabled=c > 0):
                    loss = loss + weight * scale * super()._compute_loss(model, channel_inputs)
        finally:
            self._shared_forward = None
        return loss

    def _channel_inputs(self, inputs: dict[str, Any], c: int, name: str) -> tuple[dict[str, Any], float]:
        """The micro-batch as TRL's loss sees it for channel ``c``, and the factor that turns TRL's
        normalization into a mean over the samples the channel covers.

        The first channel covers every sample. A later one covers the samples where it is nonzero
        (HDPO aggregates L_tool over those): the others leave the loss mask, token-normalized loss
        types divide by the covered tokens of the generation batch, and loss types that average over
        the B sequences of the micro-batch are rescaled by ``B / covered``. Every row stays, so the
        tensors TRL gathers for metrics have the same shape on every process.
        """
        adv = inputs["channel_advantages"][:, c]
        out = {k: v for k, v in inputs.items() if k != "channel_advantages" and not k.startswith("num_items_in_batch/")}
        out["advantages"] = adv
        if c == 0:
            return out, 1.0
        covered = adv != 0
        out["tool_mask"] = inputs.get("tool_mask", torch.ones_like(inputs["completion_mask"])) * covered[:, None]
        out["num_items_in_batch"] = inputs[f"num_items_in_batch/{name}"]
        if self.beta != 0.0:  # reference = current policy: KL term and gradient are 0, the first channel has the KL
            out["ref_per_token_logps"] = self._shared_forward["out"][0].detach()
        if self.loss_type in _TOKEN_NORMALIZED:
            return out, 1.0
        if self.loss_type in _SEQUENCE_NORMALIZED:
            return out, len(adv) / max(int(covered.sum()), 1)
        raise NotImplementedError(f"PolyrewardGRPOTrainer: channel losses for TRL loss_type={self.loss_type!r}")

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        """During a multi-channel loss, the first channel's forward serves every channel (one graph, one backward)."""
        shared = self._shared_forward
        if shared is not None and "out" in shared:
            return shared["out"]
        out = super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
        if shared is not None:
            shared["out"] = out
        return out

    @contextlib.contextmanager
    def _extra_channel(self, name: str, enabled: bool) -> Iterator[None]:
        """For channels after the first: no second entropy bonus / aux loss, metrics under ``channel/<name>/``."""
        if not enabled:
            yield
            return
        metrics = self._metrics["train" if self.model.training else "eval"]
        before = {key: len(values) for key, values in metrics.items()}
        saved = self._entropy_bonus_enabled, self.aux_loss_enabled
        self._entropy_bonus_enabled = self.aux_loss_enabled = False
        try:
            yield
        finally:
            self._entropy_bonus_enabled, self.aux_loss_enabled = saved
            for key in [k for k in metrics if not k.startswith("channel/") and len(metrics[k]) > before.get(k, 0)]:
                metrics[f"channel/{name}/{key}"].extend(metrics[key][before.get(key, 0) :])
                del metrics[key][before.get(key, 0) :]
                if not metrics[key]:
                    del metrics[key]

    # ------------------------------------------------------------------ 4. metrics
    def _log(self, result: AdvantageResult) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = self._reward_metrics()
        if self.diagnostics:
            diag = diagnose(self.reward_batch, result).as_dict()
            metrics.update({k.replace("diag/given/", f"diag/{self.estimator}/"): v for k, v in diag.items()})
        for key, value in metrics.items():
            self._metrics[mode][key].append(float(value))
        self._replace_logged_advantages(result)

    def _reward_metrics(self) -> dict[str, float]:
        """The reward set's metrics for the whole generation batch: ``/mean``, ``/std`` (unbiased) and
        ``/applicable`` from the gathered batch, failure counts summed over processes, the rest averaged."""
        metrics = dict(self._scored.metrics)
        if self.accelerator.num_processes > 1:
            keys = sorted(metrics)
            table = self._gather(torch.tensor([[metrics[k] for k in keys]], dtype=torch.float32))
            metrics = {
                k: float(table[:, j].sum() if k.endswith(_COUNTED) else table[:, j].nanmean()) for j, k in enumerate(keys)
            }
        rewards = self.reward_batch.rewards
        mean, std, count = group_mean_std(rewards, torch.zeros(len(rewards), dtype=torch.long, device=rewards.device), 1)
        for k, name in enumerate(self.reward_batch.names):
            metrics[f"reward/{name}/mean"], metrics[f"reward/{name}/std"] = float(mean[0, k]), float(std[0, k])
            metrics[f"reward/{name}/applicable"] = float(count[0, k]) / len(rewards)
        return metrics

    def _replace_logged_advantages(self, result: AdvantageResult) -> None:
        """The completions table shows the advantages used (per-turn ones as their mean), not TRL's dropped ones."""
        logged = self._logs["advantages"]
        for _ in range(min(len(logged), self.reward_batch.num_samples)):
            logged.pop()
        shown = result.advantages
        if result.level == "turn":
            mask = result.mask.to(shown.dtype)
            shown = (shown * mask).sum(-1) / mask.sum(-1).clamp_min(1)
        logged.extend(shown.tolist())


def _check_estimator(name: str, params: dict[str, Any]) -> None:
    """An unknown estimator or parameter is an error at construction, not at the first step."""
    allowed = advantages.parameters(name)  # KeyError listing close names
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise TypeError(f"estimator {name!r} has no parameter(s) {unknown}; allowed: {sorted(allowed)}")
