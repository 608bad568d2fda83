"""Where policy statistics live: the store interface and the in-memory store.

A worker folds a whole batch of frames into one :class:`~policy_store.stats.Delta` and applies
it in one call, so a networked store (Redis) needs one round trip per batch. Stores only apply
deltas (:meth:`~policy_store.stats.ArmStats.apply`); what a delta holds is the policy's call.

>>> from policy_store.stats import Delta
>>> store = MemoryStore(num_arms=3)
>>> d = Delta.zeros(3)
>>> d.add(arm=1, rewards=[(1, 0.4), (0, 0.7)])
>>> store.apply("global", d)
>>> s = store.read("global")
>>> s.n.tolist(), s.pulls.tolist(), float(s.t)
([1.0, 1.0, 0.0], [0.0, 1.0, 0.0], 1.0)
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Protocol

from policy_store.stats import ArmStats, Delta
from policy_store.uplink import valid_rate


class PolicyStore(Protocol):
    """Read and atomically add to the statistics of named policies."""

    def read(self, key: str) -> ArmStats: ...

    def apply(self, key: str, delta: Delta) -> None: ...

    def reset(self, key: str) -> None: ...

    def policies(self) -> list[str]: ...


class MemoryStore:
    """Thread-safe in-process store (offline replay, tests, single-process runs).

    Like the Redis store it skips frames whose id it applied before (the last
    ``dedup_frames`` ids per policy), so a re-consumed batch does not count twice.
    """

    def __init__(self, num_arms: int, dedup_frames: int = 100_000) -> None:
        self.num_arms = num_arms
        self.dedup_frames = dedup_frames
        self._stats: dict[str, ArmStats] = {}
        self._seen: dict[str, tuple[set[str], deque[str]]] = {}
        self._lock = threading.Lock()
        self._rate: float | None = None

    def _get(self, key: str) -> ArmStats:
        if key not in self._stats:
            self._stats[key] = ArmStats.zeros(self.num_arms)
        return self._stats[key]

    def read(self, key: str) -> ArmStats:
        with self._lock:
            return self._get(key).copy()

    def apply(self, key: str, delta: Delta) -> None:
        with self._lock:
            ids, order = self._seen.setdefault(key, (set(), deque()))
            if delta.records:
                delta = delta.without(ids)
                for rec in delta.records:
                    if rec.frame_id:
                        ids.add(rec.frame_id)
                        order.append(rec.frame_id)
                while len(order) > self.dedup_frames:
                    ids.discard(order.popleft())
            self._get(key).apply(delta)

    def reset(self, key: str) -> None:
        with self._lock:
            self._stats.pop(key, None)
            self._seen.pop(key, None)

    def policies(self) -> list[str]:
        with self._lock:
            return sorted(self._stats)

    def publish_rate(self, rate_bps: float) -> None:
        """The measured uplink rate, shared (:class:`~policy_store.uplink.RateBoard`)."""
        self._rate = valid_rate(rate_bps)

    def shared_rate(self) -> float | None:
        return self._rate
