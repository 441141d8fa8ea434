"""Claim 6: multi-critic PPO vs one scalarized critic when reward components differ in scale by 100x.

Environment: MO-Gymnasium ``deep-sea-treasure-v0`` (components ``treasure`` 0.7..23.7 on
arrival, ``time`` -1 per step). A wrapper multiplies the raw ``treasure`` component by ``scale`` and
the arm weights it ``1 / scale``, so the objective ``sum_k w_k R_k = treasure + time`` (Deep Sea
Treasure's usual weights (1, 1)) is the same in every arm; only the scale each critic sees differs.
The single critic learns the weighted sum, so it sees the same rewards at every scale (up to
float32 rounding); each multi-critic head learns its raw component (``treasure`` up to 2,370 at
``scale = 100``).

Arms (PPO defaults otherwise, the same for every arm): at ``scale = 100``: ``single``,
``multi_scalarized`` (MOPPO: normalize ``sum_k w_k A_k``), ``multi_per_critic`` (SLIM: normalize
each ``A_k``, then weight); at ``scale = 1`` (reference): ``single`` and ``multi_scalarized``.
Diagnostic arm, added after the first run: ``x100/multi_scalarized_no_grad_clip``, the same with
``max_grad_norm = 0`` (the default clip of 0.5 acts on the actor's and the critics' gradients
together, so a critic whose loss is in the 10^5 scales the policy's step down with it). Added after that
finding: ``x100/multi_scalarized_separate_clip`` (``grad_clip: separate``: the policy's and the critics'
gradients are clipped apart).
Reported: the weighted return of the greedy policy on the original objective (the best policy
earns 7.1, docs/gym.md), its treasure and time, the training weighted
return averaged over training, value-loss curves (sum over critics, in each critic's own units).

    .venv/bin/python benchmarks/evidence_multicritic.py     # results/evidence_multicritic.{json,png}
    .venv/bin/python benchmarks/evidence_multicritic.py --smoke --out /tmp/x
"""

from __future__ import annotations

import sys
from pathlib import Path

import _evidence_gym as eg
import gymnasium as gym
import numpy as np
import torch

from polyreward.gym import PPO, GymConfig, evaluate
from polyreward.testbed import evidence as ev

NAME = "evidence_multicritic"
CLAIM = "Claim 6: multi vs single critic, treasure x100 (Deep Sea Treasure)"
ENV_ID = "polyreward-evidence/ScaledDST-v0"
STEPS = 61_440  # 120 updates of 4 x 128: the docs report DST PPO returns of 4.1-6.7 after 40-50k steps
CRITICS = {
    "single": {"critic": "single"},
    "multi_scalarized": {"critic": "multi", "critic_norm": "scalarized"},
    "multi_per_critic": {"critic": "multi", "critic_norm": "per_critic"},
    # diagnostic: the gradient-norm clip (0.5) acts on actor and critics together
    "multi_scalarized_no_grad_clip": {"critic": "multi", "critic_norm": "scalarized", "max_grad_norm": 0.0},
    # the fix that finding suggested: clip the policy's and the critics' gradients apart
    "multi_scalarized_separate_clip": {"critic": "multi", "critic_norm": "scalarized", "grad_clip": "separate"},
}
ARM_GRID = [(100.0, "single"), (100.0, "multi_scalarized"), (100.0, "multi_per_critic"),
            (100.0, "multi_scalarized_no_grad_clip"), (100.0, "multi_scalarized_separate_clip"),
            (1.0, "single"), (1.0, "multi_scalarized")]  # fmt: skip
CURVES = ["charts/episodic_return", "losses/value_sum", "losses/approx_kl"]
COMPARISONS = [
    ev.Comparison("x100/multi_scalarized", "x100/single", "eval/weighted_return"),
    ev.Comparison("x100/multi_per_critic", "x100/single", "eval/weighted_return"),
    ev.Comparison("x100/multi_scalarized", "x100/multi_per_critic", "eval/weighted_return"),
    ev.Comparison("x1/multi_scalarized", "x1/single", "eval/weighted_return"),
    ev.Comparison("x1/multi_scalarized", "x1/single", "train/weighted_return_mean"),
    ev.Comparison("x100/multi_scalarized", "x1/multi_scalarized", "eval/weighted_return"),
    ev.Comparison("x100/single", "x1/single", "eval/weighted_return"),
    ev.Comparison("x100/multi_scalarized", "x100/single", "train/weighted_return_mean"),
    ev.Comparison("x100/multi_scalarized_no_grad_clip", "x100/multi_scalarized", "eval/weighted_return"),
    ev.Comparison("x100/multi_scalarized_no_grad_clip", "x100/single", "eval/weighted_return"),
    ev.Comparison("x100/multi_scalarized_separate_clip", "x100/multi_scalarized", "eval/weighted_return"),
    ev.Comparison("x100/multi_scalarized_separate_clip", "x100/single", "eval/weighted_return"),
]


class ScaleComponents(gym.Wrapper):
    """Multiplies an MO env's vector reward by ``scales[D]`` (the env's ``reward_space`` is unchanged)."""

    def __init__(self, env: gym.Env, scales: list[float]):
        super().__init__(env)
        self.scales = np.asarray(scales, dtype=np.float32)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, np.asarray(reward, dtype=np.float32) * self.scales, terminated, truncated, info


def make_scaled(scale: float = 1.0) -> gym.Env:
    """Deep Sea Treasure with ``treasure`` multiplied by ``scale`` (the registered entry point)."""
    import mo_gymnasium

    return ScaleComponents(mo_gymnasium.make("deep-sea-treasure-v0"), [scale, 1.0])


gym.register(ENV_ID, entry_point=make_scaled, disable_env_checker=True)


def arm(scale: float, critic: str, steps: int = STEPS) -> eg.Arm:
    config = GymConfig(
        env_id=ENV_ID,
        env_kwargs={"scale": scale},
        reward_names=["treasure", "time"],
        weights={"treasure": 1.0 / scale, "time": 1.0},
        **CRITICS[critic],
    )
    return eg.Arm(config, steps, group=f"treasure x{scale:g}")


def evaluate_arm(ppo: PPO, history: list[dict[str, float]]) -> dict[str, float]:
    """Greedy policy (Deep Sea Treasure is deterministic: 2 episodes), on the original objective."""
    result = evaluate(ppo, episodes=2)
    scale = ppo.config.env_kwargs["scale"]
    return {
        "eval/weighted_return": result.weighted(ppo.config.weights),
        "eval/treasure": result.mean["treasure"] / scale,
        "eval/time": result.mean["time"],
        "train/weighted_return_mean": eg.area_under_curve(history, "charts/episodic_return"),
    }


def main() -> None:
    torch.set_num_threads(1)
    args = ev.parse_args(__doc__.splitlines()[0], Path(__file__).parent / "results", default_seeds=5)
    steps = 512 if args.smoke else STEPS
    arms = {f"x{scale:g}/{critic}": arm(scale, critic, steps) for scale, critic in ARM_GRID}
    notes = (
        f"PPO defaults (lr 2.5e-4, 4 envs x 128 steps, 4 epochs x 4 minibatches, value clipping 0.2, grad norm 0.5), "
        f"{STEPS} env steps per run, not tuned per arm; weights treasure = 1/scale, time = 1."
    )
    report = eg.report(CLAIM, " ".join(sys.argv), arms, range(args.seeds), COMPARISONS, CURVES, evaluate_arm, notes)
    eg.write(report, args.out, NAME, CURVES, log=["losses/value_sum"])


if __name__ == "__main__":
    main()
