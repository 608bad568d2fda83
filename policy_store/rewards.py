"""Costs and the unsupervised reward of each split arm (algorithms.md, section 2).

Arms are 0-based: arm ``k`` exits after block ``depths[k]``; the last arm is the final exit.
Confidence stands in for accuracy, so no reward ever needs a label.

>>> cm = CostModel(depths=(3, 6, 9), gamma=0.1, mu=1.0, alpha=0.5, offload_cost=0.5)
>>> [round(float(c), 2) for c in cm.compute_cost]
[0.3, 0.6, 0.9]
>>> conf = np.array([[0.9, 0.2, 0.8]])      # C_1 = 0.9 ≥ α: arm 0 exits at the edge
>>> [round(float(r), 2) for r in cm.reward_matrix(conf)[0]]
[0.6, -0.3, -0.1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class CostModel:
    """λ_k = γ·ℓ_k edge compute, o per offload, μ converting cost to confidence units."""

    depths: Sequence[int]
    gamma: float = 0.1
    mu: float = 1.0
    alpha: float = 0.5
    offload_cost: float = 0.5
    compute_cost: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        d = np.asarray(self.depths, dtype=np.float64)
        if d.ndim != 1 or len(d) < 1 or np.any(np.diff(d) <= 0):
            raise ValueError(f"depths must be strictly increasing, got {list(self.depths)}")
        object.__setattr__(self, "depths", tuple(int(x) for x in self.depths))
        object.__setattr__(self, "compute_cost", self.gamma * d)

    @property
    def num_arms(self) -> int:
        return len(self.depths)

    @property
    def final(self) -> int:
        return self.num_arms - 1

    @property
    def final_cost(self) -> float:
        """Cost of running every frame to the final exit on the edge (the reference)."""
        return float(self.compute_cost[-1])

    def exits_at(self, conf: np.ndarray) -> np.ndarray:
        """(…, L) bool: the frame would leave the edge at arm k (C_k ≥ α, or the final arm)."""
        ok = conf >= self.alpha
        ok[..., -1] = True
        return ok

    def reward_matrix(self, conf: np.ndarray) -> np.ndarray:
        """(N, L) reward of every arm for every frame, from the (N, L) confidence matrix."""
        conf = np.asarray(conf, dtype=np.float64)
        c_final = conf[:, -1:]
        lam = self.mu * self.compute_cost
        exit_r = conf - lam
        off_r = c_final - (lam + self.mu * self.offload_cost)
        return np.where(self.exits_at(conf), exit_r, off_r)

    def cost_matrix(self, conf: np.ndarray) -> np.ndarray:
        """(N, L) cost of every arm for every frame: λ_k, plus o when offloaded."""
        off = ~self.exits_at(np.asarray(conf))
        return self.compute_cost[None, :] + self.offload_cost * off

    def reward(
        self, arm: int, c_arm: float, c_final: float | None, offloaded: bool | None = None
    ) -> float:
        """Reward of one frame at ``arm``; ``c_final`` is needed only if it was offloaded.

        ``offloaded`` overrides the ``C ≥ α`` rule when another mechanism (a channel-aware
        transmission decision) chose whether the frame left the edge.
        """
        lam = self.mu * float(self.compute_cost[arm])
        exited = arm == self.final or c_arm >= self.alpha if offloaded is None else not offloaded
        if exited:
            return float(c_arm) - lam
        if c_final is None:
            raise ValueError(f"arm {arm} offloaded (C={c_arm:.3f} < α): its reward needs C_L")
        return float(c_final) - lam - self.mu * self.offload_cost

    def observations(
        self,
        arm: int,
        conf_row: Sequence[float],
        c_final: float | None,
        side: bool,
        offloaded: bool | None = None,
    ) -> list[tuple[int, float]]:
        """(arm, reward) pairs that one frame reveals, online.

        Always the pulled arm (once ``c_final`` is known when it was offloaded). With side
        observations also every shallower arm j whose reward is computable: ``C_j ≥ α``, or
        ``C_L`` known because this frame reached the final exit (offloaded, or arm = L-1).
        (ours) An arm whose reward needs an unknown ``C_L`` is not updated.
        """
        out = [(arm, self.reward(arm, conf_row[arm], c_final, offloaded))]
        if side:
            for j in range(arm):
                cj = conf_row[j]
                if cj is None or np.isnan(cj):
                    continue
                if cj >= self.alpha or c_final is not None:
                    out.append((j, self.reward(j, cj, c_final)))
        return out
