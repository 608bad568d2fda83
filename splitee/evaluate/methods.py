"""Every method the evaluator reports, scored on one setting's exit outputs.

Labels enter only here, to score decisions after the fact; no policy sees them.
Per frame and arm k the outcome is fixed by the confidences: exit at the edge with exit k's
prediction when ``C_k ≥ α`` (or k is final), else the cloud's final prediction — with a
learned bottleneck, the cloud's prediction *after* the codec at arm k (``cloud``), and the
bytes each arm's offload carries (``offload_bytes``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policy_store.rewards import CostModel
from splitee.evaluate.outputs import ExitOutputs


@dataclass(frozen=True)
class Setting:
    """One distortion setting's matrices, everything a method needs, as (N, L) arrays."""

    name: str
    level: float
    outputs: ExitOutputs
    labels: np.ndarray
    cost_model: CostModel
    # what the cloud answers for a frame offloaded at arm k, when it depends on k (a codec);
    # None: the final exit's answer for every arm
    cloud: ExitOutputs | None = None
    offload_bytes: np.ndarray | None = None  # (N, L) bytes an offload at arm k carries

    @property
    def exits(self) -> np.ndarray:
        return self.cost_model.exits_at(self.outputs.confidence.astype(np.float64))

    @property
    def offload_costs(self) -> np.ndarray | None:
        """(N, L) each frame's o per arm at the bytes it carries (the "bytes" mode prices
        every offload by its size, the live workers' ``for_payload``); None: the arms' o."""
        if self.offload_bytes is None:
            return None
        return self.cost_model.frame_offload_costs(self.offload_bytes)

    @property
    def rewards(self) -> np.ndarray:
        conf = self.outputs.confidence.astype(np.float64)
        final = conf[:, -1:] if self.cloud is None else self.cloud.confidence
        return self.cost_model.rewards(conf, self.exits, final, self.offload_costs)

    @property
    def costs(self) -> np.ndarray:
        return self.cost_model.cost_matrix(self.outputs.confidence, self.offload_costs)

    @property
    def correct(self) -> np.ndarray:
        """(N, L) whether arm k's final answer for the frame is right."""
        edge_ok = self.outputs.correct(self.labels)
        cloud_ok = edge_ok[:, -1:] if self.cloud is None else self.cloud.correct(self.labels)
        return np.where(self.exits, edge_ok, cloud_ok)


@dataclass
class MethodResult:
    method: str
    accuracy: float
    cost: float
    cost_reduction: float
    offload_fraction: float
    regret: float
    runs: int
    regret_curve: np.ndarray | None = None  # mean cumulative regret over the stream
    arm_counts: np.ndarray | None = None  # how often each arm was chosen (fraction)
    offload_bytes: float | None = None  # mean bytes sent per frame (with offload_bytes)

    def row(self, setting: Setting) -> dict:
        extra = {} if self.offload_bytes is None else {"offload_bytes": round(self.offload_bytes)}
        return {
            "distortion": setting.name,
            "level": setting.level,
            "method": self.method,
            "accuracy": round(self.accuracy, 6),
            "cost": round(self.cost, 6),
            "cost_reduction": round(self.cost_reduction, 6),
            "offload_fraction": round(self.offload_fraction, 6),
            "regret": round(self.regret, 4),
            "runs": self.runs,
            **extra,
        }


def score_arms(method: str, setting: Setting, arms: np.ndarray, orders: np.ndarray) -> MethodResult:
    """Score a policy's (R, T) chosen arms over (R, T) frame orders."""
    correct, costs, exits = setting.correct, setting.costs, setting.exits
    means = setting.rewards.mean(axis=0)
    arms = arms.astype(np.intp)
    acc = correct[orders, arms].mean()
    cost = costs[orders, arms].mean()
    off = (~exits[orders, arms]).mean()
    gap = means.max() - means[arms]  # pseudo-regret per step
    curve = np.cumsum(gap, axis=1).mean(axis=0)
    counts = np.bincount(arms.ravel(), minlength=len(means)) / arms.size
    return MethodResult(
        method,
        float(acc),
        float(cost),
        1 - float(cost) / setting.cost_model.final_cost,
        float(off),
        float(curve[-1]),
        arms.shape[0],
        curve,
        counts,
        sent_bytes(setting, orders, arms),
    )


def sent_bytes(setting: Setting, frames: np.ndarray, arms: np.ndarray) -> float | None:
    """Mean bytes offloaded per frame when frame ``frames[i]`` runs arm ``arms[i]``."""
    if setting.offload_bytes is None:
        return None
    off = ~setting.exits[frames, arms]
    return float((setting.offload_bytes[frames, arms] * off).mean())


def fixed_arm(setting: Setting, k: int, name: str | None = None) -> MethodResult:
    means = setting.rewards.mean(axis=0)
    n = len(setting.labels)
    cost = float(setting.costs[:, k].mean())
    frames = np.arange(n)
    return MethodResult(
        name or f"fixed-{k + 1}",
        float(setting.correct[:, k].mean()),
        cost,
        1 - cost / setting.cost_model.final_cost,
        float((~setting.exits[:, k]).mean()),
        float((means.max() - means[k]) * n),
        1,
        offload_bytes=sent_bytes(setting, frames, np.full(n, k)),
    )


def best_fixed(setting: Setting) -> tuple[int, MethodResult]:
    k = int(np.argmax(setting.rewards.mean(axis=0)))
    return k, fixed_arm(setting, k, "best-fixed")


def edge_only(setting: Setting) -> MethodResult:
    """First exit with ``C ≥ α`` (else the final exit), all on the edge, never offload."""
    exits = setting.exits
    first = np.argmax(exits, axis=1)  # final column is always True
    rows = np.arange(len(first))
    cost = float(setting.cost_model.compute_cost[first].mean())
    acc = float(setting.outputs.correct(setting.labels)[rows, first].mean())
    sent = None if setting.offload_bytes is None else 0.0
    return MethodResult(
        "edge-only-ee",
        acc,
        cost,
        1 - cost / setting.cost_model.final_cost,
        0.0,
        float("nan"),
        1,
        offload_bytes=sent,
    )


def cloud_only(setting: Setting) -> MethodResult:
    """Send the input, the cloud runs everything: cost o (each frame's, where offloads are
    priced by their bytes), the final exit's accuracy."""
    o = setting.cost_model.offload_cost
    acc = float(setting.outputs.correct(setting.labels)[:, -1].mean())
    sent = None  # the frame's own bytes, where arm 0 is the send-frame arm (it computes nothing)
    if setting.offload_bytes is not None and setting.cost_model.compute_cost[0] == 0:
        sent = float(setting.offload_bytes[:, 0].mean())
        o = float(setting.offload_costs[:, 0].mean())
    return MethodResult(
        "cloud-only",
        acc,
        o,
        1 - o / setting.cost_model.final_cost,
        1.0,
        float("nan"),
        1,
        offload_bytes=sent,
    )
