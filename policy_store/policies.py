"""Bandit policies over split arms: pure math on arm statistics, no I/O.

Every policy works on :class:`ArmStats` whose arrays may carry leading batch dimensions, so the
same class serves one live worker (shape ``(L,)``) and the offline replay of many independent
streams at once (shape ``(R, L)``). The shared interface, after river's ``bandit`` package:

* ``pull(stats) -> arm(s)``      which arm to play next,
* ``observe(arm, conf_known, exits, final_known) -> mask``   which arms one frame updates,
* ``update(stats, mask, rewards)``   fold those rewards into the statistics.

>>> import numpy as np
>>> p = UCB1(beta=1.0)
>>> st = ArmStats.zeros(3)
>>> [int(p.pull(st)) for _ in range(1)]     # unplayed arms come first, lowest index first
[0]
>>> p.update(st, np.array([True, False, False]), np.array([0.5, 0.0, 0.0]))
>>> int(p.pull(st)), int(st.t), st.n.tolist()
(1, 1, [1.0, 0.0, 0.0])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ArmStats:
    """Arm statistics: observations ``n``, reward sums ``s``, decisions ``pulls``, step ``t``.

    ``n`` counts every reward folded in (side observations included); ``pulls`` counts only the
    arms actually chosen, so ``pulls.sum() == t`` for a single stream.
    """

    n: np.ndarray
    s: np.ndarray
    pulls: np.ndarray
    t: np.ndarray = field(default_factory=lambda: np.zeros(()))

    @classmethod
    def zeros(cls, num_arms: int, batch: tuple[int, ...] = ()) -> ArmStats:
        shape = (*batch, num_arms)
        return cls(np.zeros(shape), np.zeros(shape), np.zeros(shape), np.zeros(batch))

    @property
    def num_arms(self) -> int:
        return int(self.n.shape[-1])

    def means(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n > 0, self.s / np.maximum(self.n, 1e-300), 0.0)

    def copy(self) -> ArmStats:
        return ArmStats(
            self.n.copy(), self.s.copy(), self.pulls.copy(), np.array(self.t, copy=True)
        )

    def to_dict(self) -> dict[str, list[float] | float]:
        return {
            "n": self.n.tolist(),
            "s": self.s.tolist(),
            "pulls": self.pulls.tolist(),
            "t": float(self.t),
        }


class Policy:
    """Base class: UCB-style index policies differ only in ``index``."""

    name = "policy"
    side_observations = False

    def index(self, stats: ArmStats) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def pull(self, stats: ArmStats) -> np.ndarray:
        """Arm(s) to play: any never-observed arm first (lowest index), else argmax index."""
        idx = self.index(stats)
        idx = np.where(stats.n > 0, idx, np.inf)
        return np.argmax(idx, axis=-1)

    def observe(
        self,
        arm: np.ndarray,
        conf_known: np.ndarray,
        exits: np.ndarray,
        final_known: np.ndarray,
    ) -> np.ndarray:
        """(…, L) mask of arms whose reward this frame reveals.

        ``arm`` (…,) chosen arms; ``conf_known`` (…, L) the exits whose confidence was computed;
        ``exits`` (…, L) ``C_j ≥ α`` (or j final); ``final_known`` (…,) whether ``C_L`` is known.
        Without side observations only the pulled arm is updated.
        """
        arms = np.arange(conf_known.shape[-1])
        pulled = arms == np.asarray(arm)[..., None]
        if not self.side_observations:
            return pulled
        below = arms < np.asarray(arm)[..., None]
        computable = exits | np.asarray(final_known)[..., None]
        return pulled | (below & conf_known & computable)

    def update(self, stats: ArmStats, mask: np.ndarray, rewards: np.ndarray, pulled=None) -> None:
        """Fold one frame (per stream) into ``stats``: ``mask`` arms get ``rewards``."""
        m = mask.astype(np.float64)
        stats.n += m
        stats.s += m * np.where(mask, rewards, 0.0)
        if pulled is None:  # the pulled arm is the deepest updated one
            pulled = mask.shape[-1] - 1 - np.argmax(mask[..., ::-1], axis=-1)
        stats.pulls += np.arange(mask.shape[-1]) == np.asarray(pulled)[..., None]
        stats.t += 1


class UCB1(Policy):
    """SplitEE: ``argmax S_k/N_k + β·sqrt(ln t / N_k)`` after playing every arm once."""

    name = "ucb1"

    def __init__(self, beta: float = 1.0) -> None:
        self.beta = beta

    def index(self, stats: ArmStats) -> np.ndarray:
        n = np.maximum(stats.n, 1e-12)
        t = np.maximum(np.asarray(stats.t, dtype=np.float64), 1.0)[..., None]
        return stats.s / n + self.beta * np.sqrt(np.log(t) / n)


class ISplitEE(UCB1):
    """I-SplitEE / SplitEE-S: UCB1 whose updates include side observations of shallower arms."""

    name = "isplitee"
    side_observations = True


class FixedArm(Policy):
    """Always the same arm (a baseline, and a way to pin the split for benchmarks).

    >>> int(FixedArm(2).pull(ArmStats.zeros(4)))
    2
    """

    name = "fixed"

    def __init__(self, arm: int) -> None:
        self.arm = arm

    def pull(self, stats: ArmStats) -> np.ndarray:
        if not 0 <= self.arm < stats.num_arms:
            raise ValueError(f"fixed arm {self.arm} outside 0..{stats.num_arms - 1}")
        return np.full(stats.n.shape[:-1], self.arm, dtype=np.int64)


POLICIES: dict[str, type[Policy]] = {"ucb1": UCB1, "isplitee": ISplitEE}


def make_policy(name: str, beta: float = 1.0) -> Policy:
    """Build a policy by name: ``ucb1``, ``isplitee`` or ``fixed:<arm>`` (1-based arm)."""
    if name.startswith("fixed:"):
        try:
            return FixedArm(int(name.split(":", 1)[1]) - 1)
        except ValueError:
            raise ValueError(f"bad fixed policy {name!r}; use fixed:<arm>, arm from 1") from None
    try:
        return POLICIES[name](beta=beta)  # type: ignore[call-arg]
    except KeyError:
        raise ValueError(
            f"unknown policy {name!r}; expected one of {sorted(POLICIES)} or fixed:<arm>"
        ) from None
