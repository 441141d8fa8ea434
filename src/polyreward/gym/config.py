"""The gym trainer's config: one flat, typed dataclass (CleanRL-style), validated at construction.

Checks that need the environment (the number of reward components, their names) run when the
environment is built (:func:`polyreward.gym.envs.make_vec_env`) and name the config field.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

from polyreward.config import ConfigError, option

Critic = Literal["multi", "single"]
CriticNorm = Literal["per_critic", "scalarized", "none"]
GradClip = Literal["joint", "separate"]
Bonus = Literal["none", "episodic", "global", "product", "sum"]
BonusKey = Literal["obs", "agent_pos"]
EpisodicBonus = Literal["count", "e3b"]
GlobalBonus = Literal["count", "rnd", "noveld"]
BonusNorm = Literal["std", "none"]
Vector = Literal["sync", "async"]
Trunk = Literal["mlp", "moe"]
ShapingMode = Literal["none", "pbrs", "naive"]
ShapingTerminal = Literal["zero", "keep"]
PVNRule = Literal["max", "policy"]
ADSMetric = Literal["euclidean", "cosine"]
TaskSampler = Literal["uniform", "learning_progress", "staged"]
BarfiWeights = Literal["global", "state"]


@dataclasses.dataclass
class GymConfig:
    trainer: Literal["gym"] = option("gym", "which trainer reads the config: 'gym' (this one) or 'lm' (language models)")
    # environment and reward components
    env_id: str = option("deep-sea-treasure-v0", "Gymnasium or MO-Gymnasium id (MiniGrid ids too)")
    env_kwargs: dict[str, Any] = option({}, "keyword arguments for gymnasium.make / mo_gymnasium.make")
    reward_names: list[str] = option(
        [], "names of a vector reward's components (length = reward_space.shape[0]); empty = built-in names or obj0.."
    )
    info_rewards: list[str] = option([], "info keys read as extra reward components each step, e.g. ['success']")
    weights: dict[str, float] | list[float] = option(
        {}, "component weights: {name: w} (unnamed ones get 1.0) or a list with one weight per component"
    )
    bonus: Bonus = option(
        "none",
        "exploration bonus component 'bonus' (arXiv 2306.03236): the episodic part, the global part, or their product / sum",
    )
    episodic_bonus: EpisodicBonus = option("count", "episodic part: 'count' (first visit) or 'e3b' (elliptical)")
    global_bonus: GlobalBonus = option("count", "global part: 'count' (1/sqrt(N)), 'rnd' or 'noveld'")
    bonus_key: BonusKey = option("obs", "state key the counts use: the observation, or env.unwrapped.agent_pos")
    bonus_global_coef: float = option(1.0, "coefficient of the global part in bonus='sum'")
    bonus_norm: BonusNorm = option("std", "'std': divide the bonus by its running std (E3B reward_norm='int'); 'none'")
    bonus_clip: float = option(1.0, "clip the (normalized) bonus to [-c, c] (E3B clips to [-1, 1]); 0 = off")
    reward_clip: float = option(
        0.0, "clip each non-bonus component's training reward to [-c, c] (E3B: 1); 0 = off; returns stay unclipped"
    )
    bonus_lr: float = option(1e-4, "Adam learning rate of the bonus networks (E3B encoder + inverse dynamics, RND)")
    bonus_epochs: int = option(1, "passes of `minibatches` Adam steps per rollout for the bonus networks")
    bonus_feature_dim: int = option(64, "E3B feature dimension d and RND output dimension")
    bonus_hidden_sizes: list[int] = option([128, 128], "hidden widths of the bonus networks (ReLU MLPs)")
    e3b_ridge: float = option(0.1, "E3B ridge lambda: C = lambda I + sum phi phi^T")
    noveld_alpha: float = option(0.1, "NovelD alpha in max(rnd(s') - alpha rnd(s), 0) (E3B scale_fac)")
    num_envs: int = option(4, "parallel environments")
    vector: Vector = option("sync", "gymnasium.vector.SyncVectorEnv or AsyncVectorEnv (one process per env)")
    # rollout and advantages
    num_steps: int = option(128, "steps per environment per rollout (T)")
    total_steps: int = option(100_000, "environment steps over all envs (learn() may override)")
    gamma: float = option(0.99, "discount")
    lam: float = option(0.95, "GAE lambda")
    critic: Critic = option("multi", "'multi': one value head per component (SLIM/MOPPO); 'single': one on the weighted sum")
    critic_norm: CriticNorm = option(
        "scalarized",
        "advantage normalization: scalarized (MOPPO: normalize sum_k w_k A_k; keeps the weighted objective), "
        "per_critic (SLIM: normalize each A_k, then weight; changes the effective trade-off), none. "
        "critic=single: scalarized and per_critic both normalize its one advantage",
    )
    # loss and optimization
    lr: float = option(2.5e-4, "Adam learning rate")
    anneal_lr: bool = option(True, "linear learning-rate decay to 0 over total_steps")
    clip: float = option(0.2, "PPO ratio clip range")
    clip_value: bool = option(True, "clip value predictions to +-clip around the rollout's values (CleanRL clip_vloss)")
    epochs: int = option(4, "optimizer passes over each rollout")
    minibatches: int = option(4, "minibatches per epoch")
    ent_coef: float = option(0.01, "entropy bonus coefficient")
    vf_coef: float = option(0.5, "value-loss coefficient")
    value_coefs: dict[str, float] = option({}, "per-critic value-loss weights c_k by component name (default 1.0)")
    max_grad_norm: float = option(0.5, "gradient clipping norm (0 = off)")
    grad_clip: GradClip = option(
        "joint",
        "'joint': one norm over all parameters (CleanRL); 'separate': the policy's parameters and the critics' "
        "(with any auxiliary heads) are clipped apart, so a large-scale critic cannot shrink the policy step",
    )
    # network
    hidden_sizes: list[int] = option([64, 64], "hidden layer widths of the actor and critic MLPs")
    shared_trunk: bool = option(False, "one trunk for actor and critics (SLIM's shared network) instead of two MLPs")
    trunk: Trunk = option("mlp", "'mlp': tanh MLP trunks; 'moe': top-k Mixture-of-Experts trunks (ScaleZero-style)")
    moe_experts: int = option(4, "trunk='moe': number of experts (MLPs with the layers hidden_sizes[:-1])")
    moe_top_k: int = option(2, "trunk='moe': experts mixed per observation (softmax over the top-k router logits)")
    moe_shared_expert: bool = option(True, "trunk='moe': add an always-on shared expert")
    moe_balance_coef: float = option(0.01, "trunk='moe': weight of the Switch load-balancing loss (losses/moe_balance)")
    # auxiliary: Proto-Value Networks loss, automatic discount scheduling (docs/gym-auxiliary.md)
    pvn_coef: float = option(0.0, "weight of the PVN successor-measure auxiliary loss (losses/pvn); 0 = off")
    pvn_tasks: int = option(100, "PVN: number of random indicator tasks (heads)")
    pvn_sparsity: float = option(0.01, "PVN: fraction of the first rollout's states in each indicator set, in (0, 1)")
    pvn_rule: PVNRule = option("max", "PVN bootstrap at s': 'max' over actions per task, or 'policy' (the current pi)")
    pvn_gamma: float = option(0.99, "PVN: discount of the successor measure, in [0, 1)")
    shaping: ShapingMode = option(
        "none",
        "component 'shaping': 'pbrs' pays gamma Phi(s') - Phi(s) (keeps the optimal policy), 'naive' pays Phi(s') "
        "(progress as reward, for comparison)",
    )
    shaping_potential: str = option(
        "", "the potential Phi(obs, env): a built-in ('minigrid_goal_distance') or 'package.module:function'"
    )
    shaping_terminal: ShapingTerminal = option("zero", "Phi after a terminal step: 'zero' (policy-invariant) or 'keep'")
    ads_demos: str = option(
        "", "ADS: .npy file of expert observation trajectories [N >= 2, T, obs_dim]; empty = off (gamma fixed)"
    )
    ads_horizon: int = option(0, "ADS: horizon H in expert steps (0 = the demos' length T)")
    ads_alpha: float = option(0.2, "ADS: weight gamma^k of a reward k steps ahead, in (0, 1)")
    ads_threshold: float = option(0.9, "ADS: advance while match >= int(threshold * ref_score), in (0, 1]")
    ads_progress_start: float = option(0.2, "ADS: initial progress k as a fraction of H, in (0, 1]")
    ads_max_delta: int = option(5, "ADS: most steps k advances per update")
    ads_ref_pct: float = option(50.0, "ADS: percentile over demo pairs of the reference score")
    ads_agent_pct: float = option(90.0, "ADS: percentile over (episode, demo) pairs of the agent's score")
    ads_metric: ADSMetric = option("euclidean", "ADS: frame cost, 'euclidean' (state features) or 'cosine'")
    # training-dynamics controllers (docs/gym-controllers.md)
    barfi_primary: str = option(
        "", "BARFI: the primary reward component; the others' weights phi are learned to raise its return; empty = off"
    )
    barfi_lr: float = option(0.05, "BARFI: Adam learning rate of phi (initial phi = `weights`)")
    barfi_every: int = option(1, "BARFI: one outer (phi) step every N PPO updates")
    barfi_clip: float = option(10.0, "BARFI: keep each phi_k in [-c, c]")
    barfi_weights: BarfiWeights = option(
        "global", "BARFI: 'global' (one phi_k per component) or 'state' (phi_k(s), a small network of the observation)"
    )
    barfi_hidden_sizes: list[int] = option(
        [32], "BARFI barfi_weights='state': hidden widths of the phi(s) network (tanh MLP; [] = linear in the observation)"
    )
    tasks: list[dict[str, Any]] = option(
        [],
        "multi-task: [{env_id, env_kwargs, name}] run by every sub-env, the task chosen at each episode start by "
        "task_sampler; empty = env_id only",
    )
    task_one_hot: bool = option(True, "tasks: append the task's one-hot to the observation")
    task_sampler: TaskSampler = option(
        "uniform", "tasks: 'uniform', 'learning_progress' (p ~ |EMA_fast - EMA_slow| of success) or 'staged' (stages)"
    )
    task_success: str = option("success", "tasks: component whose episode return > 0 counts as a success")
    lp_fast: float = option(0.1, "learning_progress: rate of the fast success EMA (per update), in (0, 1]")
    lp_slow: float = option(0.02, "learning_progress: rate of the slow success EMA (per update), in (0, lp_fast)")
    lp_floor: float = option(0.1, "learning_progress: probability mass spread uniformly over the tasks, in [0, 1]")
    stages: list[dict[str, Any]] = option(
        [],
        "staged: [{weights: {task: w}, until_steps: N} or {weights, until_success: s}]; the last stage has no "
        "trigger; success = mean fast-EMA success of the stage's tasks",
    )
    # run
    seed: int = option(0, "seed for networks, sampling and environment resets")
    threads: int = option(0, "torch CPU threads (0 = torch's default)")
    device: str = option("cpu", "torch device")
    output_dir: str = option("runs/gym", "run directory (metrics.jsonl, TensorBoard, checkpoints)")
    save_every: int = option(0, "checkpoint every N updates (and always at the end); 0 = only at the end")
    tensorboard: bool = option(True, "write TensorBoard events next to metrics.jsonl")

    def __post_init__(self) -> None:
        if self.grad_clip == "separate" and self.shared_trunk:
            raise ConfigError("grad_clip: 'separate' needs separate actor and critic trunks (shared_trunk: false)")
        self._check_bonus()
        self._check_auxiliary()
        self._check_controllers()
        if (self.shaping == "none") != (self.shaping_potential == ""):
            raise ConfigError(
                f"shaping={self.shaping!r}, shaping_potential={self.shaping_potential!r}: give a potential exactly "
                "when shaping is 'pbrs' or 'naive'"
            )
        if self.shaping != "none" and self.ads_demos:
            raise ConfigError("shaping: potential-based shaping uses the fixed gamma; it cannot follow ads_demos' schedule")
        for name in ("num_envs", "num_steps", "total_steps", "epochs", "minibatches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "clip"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("ent_coef", "vf_coef", "max_grad_norm", "save_every", "threads", "bonus_global_coef"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("gamma", "lam"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name}: must be in [0, 1], got {getattr(self, name)}")
        batch = self.num_envs * self.num_steps
        if batch % self.minibatches:
            raise ConfigError(
                f"minibatches: {self.minibatches} does not divide the rollout of num_envs * num_steps = {batch} steps"
            )
        if not self.hidden_sizes or any(h < 1 for h in self.hidden_sizes):
            raise ConfigError(f"hidden_sizes: expected at least one positive width, got {self.hidden_sizes}")
        if not 1 <= self.moe_top_k <= self.moe_experts:
            raise ConfigError(f"moe_top_k: must be in [1, moe_experts={self.moe_experts}], got {self.moe_top_k}")
        if self.moe_balance_coef < 0:
            raise ConfigError(f"moe_balance_coef: must be >= 0, got {self.moe_balance_coef}")
        if len(set(self.reward_names)) != len(self.reward_names):
            raise ConfigError(f"reward_names: duplicate names in {self.reward_names}")
        for name, value in self.value_coefs.items():
            if not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"value_coefs[{name!r}]: expected a number >= 0, got {value!r}")

    def _check_bonus(self) -> None:
        """The exploration-bonus fields: Literal choices, ranges."""
        for name, choices in (
            ("bonus", Bonus),
            ("episodic_bonus", EpisodicBonus),
            ("global_bonus", GlobalBonus),
            ("bonus_norm", BonusNorm),
        ):
            if getattr(self, name) not in typing.get_args(choices):
                raise ConfigError(f"{name}={getattr(self, name)!r} is not one of {list(typing.get_args(choices))}")
        for name in ("bonus_lr", "e3b_ridge"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("bonus_clip", "reward_clip", "noveld_alpha"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("bonus_epochs", "bonus_feature_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not self.bonus_hidden_sizes or any(h < 1 for h in self.bonus_hidden_sizes):
            raise ConfigError(f"bonus_hidden_sizes: expected at least one positive width, got {self.bonus_hidden_sizes}")

    def _check_auxiliary(self) -> None:
        """The ``pvn_*`` and ``ads_*`` fields: Literal choices, ranges (the demo file is read by the trainer)."""
        for name, choices in (("pvn_rule", PVNRule), ("ads_metric", ADSMetric)):
            if getattr(self, name) not in typing.get_args(choices):
                raise ConfigError(f"{name}={getattr(self, name)!r} is not one of {list(typing.get_args(choices))}")
        checks = {  # field: (holds, what it must be)
            "pvn_coef": (self.pvn_coef >= 0, ">= 0"),
            "pvn_tasks": (self.pvn_tasks >= 1, ">= 1"),
            "pvn_sparsity": (0 < self.pvn_sparsity < 1, "in (0, 1)"),
            "pvn_gamma": (0 <= self.pvn_gamma < 1, "in [0, 1)"),
            "ads_horizon": (self.ads_horizon >= 0, ">= 0 (0 = the demos' length)"),
            "ads_alpha": (0 < self.ads_alpha < 1, "in (0, 1)"),
            "ads_threshold": (0 < self.ads_threshold <= 1, "in (0, 1]"),
            "ads_progress_start": (0 < self.ads_progress_start <= 1, "in (0, 1]"),
            "ads_max_delta": (self.ads_max_delta >= 1, ">= 1"),
            "ads_ref_pct": (0 <= self.ads_ref_pct <= 100, "in [0, 100]"),
            "ads_agent_pct": (0 <= self.ads_agent_pct <= 100, "in [0, 100]"),
        }
        self._require(checks)
        if self.ads_horizon and int(self.ads_progress_start * self.ads_horizon) < 1:
            raise ConfigError(
                f"ads_progress_start: {self.ads_progress_start} * ads_horizon {self.ads_horizon} gives no start index >= 1"
            )

    def _check_controllers(self) -> None:
        """The ``barfi_*``, ``tasks``, ``lp_*`` and ``stages`` fields (task names are checked by the env)."""
        for name, choices in (("task_sampler", TaskSampler), ("barfi_weights", BarfiWeights)):
            if getattr(self, name) not in typing.get_args(choices):
                raise ConfigError(f"{name}={getattr(self, name)!r} is not one of {list(typing.get_args(choices))}")
        checks = {  # field: (holds, what it must be)
            "barfi_lr": (self.barfi_lr > 0, "> 0"),
            "barfi_every": (self.barfi_every >= 1, ">= 1"),
            "barfi_clip": (self.barfi_clip > 0, "> 0"),
            "lp_fast": (0 < self.lp_fast <= 1, "in (0, 1]"),
            "lp_slow": (0 < self.lp_slow < self.lp_fast, f"in (0, lp_fast={self.lp_fast})"),
            "lp_floor": (0 <= self.lp_floor <= 1, "in [0, 1]"),
        }
        self._require(checks)
        if self.barfi_primary and self.critic != "multi":
            raise ConfigError("barfi_primary: BARFI needs one advantage per component; set critic='multi'")
        if self.barfi_weights == "state" and not self.barfi_primary:
            raise ConfigError("barfi_weights: 'state' learns weights for BARFI; set barfi_primary too")
        if any(not isinstance(h, int) or h < 1 for h in self.barfi_hidden_sizes):
            raise ConfigError(f"barfi_hidden_sizes: expected positive widths, got {self.barfi_hidden_sizes}")
        for i, task in enumerate(self.tasks):
            if not isinstance(task, dict) or not isinstance(task.get("env_id"), str):
                raise ConfigError(f"tasks[{i}]: expected a mapping with a string 'env_id', got {task!r}")
            unknown = sorted(set(task) - {"env_id", "env_kwargs", "name"})
            if unknown:
                raise ConfigError(f"tasks[{i}]: unknown keys {unknown}; expected env_id, env_kwargs, name")
        if self.task_sampler != "uniform" and not self.tasks:
            raise ConfigError(f"task_sampler={self.task_sampler!r} needs a task list in `tasks`")
        if (self.task_sampler == "staged") != bool(self.stages):
            raise ConfigError("stages: give stages exactly when task_sampler='staged'")

    def _require(self, checks: dict[str, tuple[bool, str]]) -> None:
        """``checks``: ``{field: (holds, what it must be)}``; the first that fails is an error naming it."""
        for name, (holds, expected) in checks.items():
            if not holds:
                raise ConfigError(f"{name}: must be {expected}, got {getattr(self, name)}")

    @property
    def batch_size(self) -> int:
        """Environment steps per rollout: ``num_envs * num_steps``."""
        return self.num_envs * self.num_steps


def resolve_weights(weights: dict[str, float] | list[float], names: list[str], field: str = "weights") -> list[float]:
    """One weight per component name from a ``{name: w}`` mapping (default 1.0) or a full list.

    Errors name ``field``, the unknown names and the component names.
    """
    if isinstance(weights, dict):
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ConfigError(f"{field}: unknown components {unknown}; the components are {names}")
        return [float(weights.get(name, 1.0)) for name in names]
    if len(weights) == 0:
        return [1.0] * len(names)
    if len(weights) != len(names):
        raise ConfigError(f"{field}: {len(weights)} weights for {len(names)} components {names}")
    return [float(w) for w in weights]


def bonus_kinds(bonus: str, episodic_bonus: str = "count", global_bonus: str = "count") -> dict[str, str]:
    """The parts of ``bonus`` in use and their kind: ``{"episodic": "count" | "e3b", "global":
    "count" | "rnd" | "noveld"}`` (``bonus="none"``: empty; ``"episodic"`` / ``"global"``: one part;
    ``"product"`` / ``"sum"``: both)."""
    kinds = {}
    if bonus in ("episodic", "product", "sum"):
        kinds["episodic"] = episodic_bonus
    if bonus in ("global", "product", "sum"):
        kinds["global"] = global_bonus
    return kinds
