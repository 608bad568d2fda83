"""Threshold adaptation: a bandit over (split arm, α) pairs instead of the arm alone.

With a grid of thresholds α_1 … α_A, pair ``(k, α_j)`` is arm ``j·L + k``
(:class:`policy_store.arms.ArmSpace`, the encoding the live workers use: the pair matrices
below are the per-α matrices side by side in that order); frames exit at arm k when
``C_k ≥ α_j``. Rewards stay unsupervised (confidence minus cost), so the bandit learns the
threshold too. Offline: UCB1 over the pairs, without side observations
(``ucb1-arm-alpha``), and I-SplitEE over them (``isplitee-arm-alpha``), whose side observations
reveal every threshold of the pulled arm and of the shallower ones where the frame's
confidences say the reward (:meth:`policy_store.policies.Policy.observe`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from policy_store.offline import replay
from policy_store.policies import UCB1, ISplitEE
from policy_store.rewards import CostModel
from splitee.evaluate.methods import MethodResult, Setting, fixed_arm, score_arms


@dataclass(frozen=True)
class PairSetting:
    """A setting whose arms are (arm, α) pairs; duck-types :class:`Setting` for scoring."""

    name: str
    level: float
    labels: np.ndarray
    rewards: np.ndarray
    exits: np.ndarray
    costs: np.ndarray
    correct: np.ndarray
    cost_model: CostModel
    offload_bytes: np.ndarray | None = None  # (N, pairs) bytes of an offload at each pair


def pair_setting(setting: Setting, grid: list[float]) -> PairSetting:
    per = [replace(setting, cost_model=replace(setting.cost_model, alpha=a)) for a in grid]
    cat = lambda attr: np.concatenate([getattr(s, attr) for s in per], axis=1)  # noqa: E731
    return PairSetting(
        setting.name,
        setting.level,
        setting.labels,
        cat("rewards"),
        cat("exits"),
        cat("costs"),
        cat("correct"),
        setting.cost_model,
        None if setting.offload_bytes is None else np.tile(setting.offload_bytes, len(grid)),
    )


def threshold_methods(
    settings: list[Setting], grid: list[float], orders: np.ndarray, beta: float
) -> list[list[MethodResult]]:
    """For every setting: UCB1 over (arm, α) pairs, and the best fixed pair in hindsight."""
    pairs = [pair_setting(s, grid) for s in settings]
    rewards = np.stack([p.rewards for p in pairs])
    exits = np.stack([p.exits for p in pairs])
    split = settings[0].cost_model.num_arms
    ucb = replay(UCB1(beta), rewards, exits, orders).arms
    side = replay(ISplitEE(beta), rewards, exits, orders, split_arms=split).arms
    out = []
    for i, p in enumerate(pairs):
        learned = score_arms("ucb1-arm-alpha", p, ucb[i], orders)  # type: ignore[arg-type]
        seen = score_arms("isplitee-arm-alpha", p, side[i], orders)  # type: ignore[arg-type]
        best = int(np.argmax(p.rewards.mean(axis=0)))
        fixed = fixed_arm(p, best, "best-fixed-arm-alpha")  # type: ignore[arg-type]
        out.append([learned, seen, fixed])
    return out
