"""The bandit's arm space: split arms, optionally crossed with a grid of exit thresholds.

With threshold adaptation the bandit chooses a pair (split arm k, threshold α_j) instead of the
arm alone; pair ``j·L + k`` is arm k with ``alpha_grid[j]``. This class is the one place that
knows the encoding, so workers, stores, the exporter and the offline evaluator agree on it.

>>> space = ArmSpace(split_arms=9, alpha_grid=(0.5, 0.7))
>>> space.num_arms, space.encode(2, 1), space.split_arm(11), space.alpha(11, default=0.5)
(18, 11, 2, 0.7)
>>> ArmSpace(9).alpha(4, default=0.5)
0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArmSpace:
    """``split_arms`` exits (0-based, the last is the final exit) × ``alpha_grid`` thresholds."""

    split_arms: int
    alpha_grid: Sequence[float] = ()

    def __post_init__(self) -> None:
        if self.split_arms < 1:
            raise ValueError(f"need at least one split arm, got {self.split_arms}")
        object.__setattr__(self, "alpha_grid", tuple(float(a) for a in self.alpha_grid))

    @property
    def pairs(self) -> bool:
        """Whether the bandit's arms are (split arm, α) pairs."""
        return bool(self.alpha_grid)

    @property
    def num_arms(self) -> int:
        """Arms of the bandit: the split arms, or every (split arm, α) pair."""
        return self.split_arms * max(1, len(self.alpha_grid))

    def encode(self, split_arm: int, threshold: int = 0) -> int:
        return threshold * self.split_arms + split_arm

    def split_arm(self, arm):
        """The split arm of a bandit arm (works on ints and arrays)."""
        return arm % self.split_arms

    def threshold_index(self, arm):
        return arm // self.split_arms

    def alpha(self, arm: int, default: float) -> float:
        """The exit threshold of a bandit arm: its grid value, or ``default`` without a grid."""
        return self.alpha_grid[arm // self.split_arms] if self.alpha_grid else default

    def alphas(self, arms: np.ndarray, default: float) -> np.ndarray:
        """Per-frame thresholds for an array of bandit arms."""
        if not self.alpha_grid:
            return np.full(np.shape(arms), default, dtype=np.float64)
        return np.asarray(self.alpha_grid)[np.asarray(arms) // self.split_arms]
