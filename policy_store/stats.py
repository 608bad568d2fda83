"""Arm statistics and the one way they change: applying a :class:`Delta`.

A policy decides what a frame changes (which arms, which rewards, how old statistics decay,
which window they live in); :meth:`ArmStats.apply` carries that change out. The offline replay
folds one frame at a time into statistics with leading batch dimensions (many streams at once),
the in-memory store folds a worker's whole batch into one policy's statistics, and the Redis
store runs the same steps in one Lua script (:mod:`policy_store.redis_store`) so concurrent
workers apply them atomically. No store knows any policy.

>>> st = ArmStats.zeros(3)
>>> d = Delta.zeros(3)
>>> d.add(arm=1, rewards=[(1, 0.4), (0, 0.7)])
>>> st.apply(d)
>>> st.n.tolist(), st.pulls.tolist(), float(st.t)
([1.0, 1.0, 0.0], [0.0, 1.0, 0.0], 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

#: No reward may exceed this in magnitude: confidences are in [0, 1] and costs are a few units,
#: so a larger value can only come from a fault, and one such value would hijack an arm's mean.
REWARD_BOUND = 1e3


@dataclass(frozen=True)
class FrameRecord:
    """One live frame's contribution: its id (for de-duplication), the pulled arm, and the
    ``(arm, reward)`` pairs it revealed."""

    frame_id: str
    pick: int
    observations: tuple[tuple[int, float], ...]


@dataclass(kw_only=True)
class Delta:
    """The change one batch of frames makes to one policy's statistics.

    Built by keyword (nine fields, several of one type): a field left out by position was
    once lost silently (a merged delta without its frame ids).

    ``n``, ``s`` and ``pulls`` are additive (shape ``(*batch, L)``), ``t`` counts frames.
    ``discount`` < 1 (D-UCB) decays the old statistics by ``discount ** t`` before the batch is
    added — a batch's frames count as arriving together, so within one batch nothing decays.
    ``window`` > 0 (SW-UCB) keeps each frame's observations (``frames``) in a history of that
    many frames and subtracts what falls out of it.
    """

    n: np.ndarray
    s: np.ndarray
    pulls: np.ndarray
    t: int = 0
    discount: float = 1.0
    window: int = 0
    frames: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    tag: str = ""  # optional id, logged by stores that keep an applied log
    records: list[FrameRecord] = field(default_factory=list)  # live frames, for de-duplication

    @classmethod
    def zeros(cls, num_arms: int, discount: float = 1.0, window: int = 0) -> Delta:
        z = np.zeros(num_arms)
        return cls(n=z.copy(), s=z.copy(), pulls=z.copy(), discount=discount, window=window)

    def add(self, arm: int, rewards: Iterable[tuple[int, float]], frame_id: str = "") -> None:
        """One frame that pulled ``arm`` and revealed ``(arm_j, reward_j)`` pairs.

        Raises ``ValueError`` — before changing anything — for an arm out of range or a reward
        that is not finite or exceeds :data:`REWARD_BOUND`. ``frame_id`` lets a store skip a
        frame whose reward it already applied (a batch consumed twice after a crash).
        """
        obs = [(int(j), float(r)) for j, r in rewards]
        num_arms = self.n.shape[-1]
        for j, r in [(arm, 0.0), *obs]:
            if not 0 <= j < num_arms:
                raise ValueError(f"arm {j} outside 0..{num_arms - 1}")
            if not (math.isfinite(r) and abs(r) <= REWARD_BOUND):
                raise ValueError(f"reward {r!r} of arm {j} is not finite within ±{REWARD_BOUND:g}")
        self.records.append(FrameRecord(frame_id, int(arm), tuple(obs)))
        mask = np.zeros(self.n.shape, dtype=bool)
        r = np.zeros(self.n.shape)
        for j, rj in obs:
            self.n[j] += 1
            self.s[j] += rj
            mask[j] = True
            r[j] = rj
        self.pulls[arm] += 1
        self.t += 1
        if self.window:
            self.frames.append((mask, r))

    def merge(self, other: Delta) -> Delta:
        """This batch and ``other`` (frames of ``other`` after this one's) as one delta.

        Every field is carried, by name: a merged delta that lost its ``records`` would
        count its frames without their ids — the Redis store refuses it, the in-memory store
        loses de-duplication."""
        if self.discount != other.discount or self.window != other.window:
            raise ValueError("cannot merge deltas of different policies")
        return Delta(
            n=self.n + other.n,
            s=self.s + other.s,
            pulls=self.pulls + other.pulls,
            t=self.t + other.t,
            discount=self.discount,
            window=self.window,
            frames=[*self.frames, *other.frames],
            tag=self.tag or other.tag,
            records=[*self.records, *other.records],
        )

    def without(self, seen: set[str]) -> Delta:
        """This delta rebuilt from its frames whose id is not in ``seen``."""
        out = Delta.zeros(self.n.shape[-1], self.discount, self.window)
        out.tag = self.tag
        for rec in self.records:
            if not (rec.frame_id and rec.frame_id in seen):
                out.add(rec.pick, rec.observations, rec.frame_id)
        return out

    def __bool__(self) -> bool:
        return self.t > 0 or bool(self.n.any())


@dataclass
class ArmStats:
    """Arm statistics: observations ``n``, reward sums ``s``, decisions ``pulls``, step ``t``.

    ``n`` counts every reward folded in (side observations included); ``pulls`` counts only the
    arms actually chosen, so ``pulls.sum() == t`` for a single stream. Arrays may carry leading
    batch dimensions (independent streams). ``ring`` holds a sliding window's history.
    """

    n: np.ndarray
    s: np.ndarray
    pulls: np.ndarray
    t: np.ndarray = field(default_factory=lambda: np.zeros(()))
    ring: dict[str, np.ndarray] | None = None

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
        ring = None if self.ring is None else {k: v.copy() for k, v in self.ring.items()}
        return ArmStats(
            self.n.copy(), self.s.copy(), self.pulls.copy(), np.array(self.t, copy=True), ring
        )

    def to_dict(self) -> dict[str, list[float] | float]:
        return {
            "n": self.n.tolist(),
            "s": self.s.tolist(),
            "pulls": self.pulls.tolist(),
            "t": float(self.t),
        }

    def apply(self, delta: Delta) -> None:
        """Fold ``delta`` in: decay, evict what leaves the window, then add."""
        if delta.discount != 1.0:
            decay = delta.discount**delta.t
            self.n *= decay
            self.s *= decay
        if delta.window:
            for mask, r in delta.frames:
                self._evict_and_push(delta.window, mask, r)
        self.n += delta.n
        self.s += delta.s
        self.pulls += delta.pulls
        self.t = self.t + delta.t

    def _evict_and_push(self, window: int, mask: np.ndarray, r: np.ndarray) -> None:
        """Push one frame into the window's ring, first subtracting the frame it replaces."""
        if self.ring is None or self.ring["mask"].shape[0] != window:
            self.ring = {
                "mask": np.zeros((window, *mask.shape), dtype=bool),
                "r": np.zeros((window, *mask.shape)),
                "pos": np.zeros((), dtype=np.int64),
            }
        ring = self.ring
        slot = int(ring["pos"]) % window
        if int(ring["pos"]) >= window:
            old_m, old_r = ring["mask"][slot], ring["r"][slot]
            self.n -= old_m
            self.s -= np.where(old_m, old_r, 0.0)
        ring["mask"][slot] = mask
        ring["r"][slot] = np.where(mask, r, 0.0)
        ring["pos"] = ring["pos"] + 1
