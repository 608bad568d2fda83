"""Where policy statistics live: the store interface, batched deltas, and the in-memory store.

A worker folds a whole batch of frames into one :class:`Delta` and applies it in one call, so
a networked store (Redis) needs one round trip per batch. Stores only add deltas; they never
compute a policy, so the same math runs offline and live.

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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from policy_store.policies import ArmStats


@dataclass
class Delta:
    """Change to one policy's statistics from a batch of frames.

    For accumulating policies it is purely additive. ``discount`` < 1 (D-UCB) makes the store
    first decay the old statistics by ``discount ** t`` — the batch's frames count as arriving
    together, so within one batch nothing decays. ``window`` > 0 (SW-UCB) makes the store append
    each frame's observations to the policy's history and evict what falls out of the window.
    """

    n: np.ndarray
    s: np.ndarray
    pulls: np.ndarray
    t: int = 0
    discount: float = 1.0
    window: int = 0
    frames: list[list[tuple[int, float]]] = field(default_factory=list)
    tag: str = ""  # optional id, logged by stores that keep an applied log

    @classmethod
    def zeros(cls, num_arms: int, discount: float = 1.0, window: int = 0) -> Delta:
        z = np.zeros(num_arms)
        return cls(z.copy(), z.copy(), z.copy(), 0, discount, window)

    @classmethod
    def for_policy(cls, policy: object, num_arms: int) -> Delta:
        return cls.zeros(num_arms, getattr(policy, "discount", 1.0), getattr(policy, "window", 0))

    def add(self, arm: int, rewards: Iterable[tuple[int, float]]) -> None:
        """One frame that pulled ``arm`` and revealed ``(arm_j, reward_j)`` pairs."""
        obs = list(rewards)
        for j, r in obs:
            self.n[j] += 1
            self.s[j] += r
        self.pulls[arm] += 1
        self.t += 1
        if self.window:
            self.frames.append(obs)

    def __bool__(self) -> bool:
        return self.t > 0 or bool(self.n.any())


class PolicyStore(Protocol):
    """Read and atomically add to the statistics of named policies."""

    def read(self, key: str) -> ArmStats: ...

    def apply(self, key: str, delta: Delta) -> None: ...

    def reset(self, key: str) -> None: ...

    def policies(self) -> list[str]: ...


class MemoryStore:
    """Thread-safe in-process store (offline replay, tests, single-process runs)."""

    def __init__(self, num_arms: int) -> None:
        self.num_arms = num_arms
        self._stats: dict[str, ArmStats] = {}
        self._history: dict[str, deque[list[tuple[int, float]]]] = {}
        self._lock = threading.Lock()

    def _get(self, key: str) -> ArmStats:
        if key not in self._stats:
            self._stats[key] = ArmStats.zeros(self.num_arms)
        return self._stats[key]

    def read(self, key: str) -> ArmStats:
        with self._lock:
            return self._get(key).copy()

    def apply(self, key: str, delta: Delta) -> None:
        with self._lock:
            st = self._get(key)
            if delta.discount != 1.0:
                decay = delta.discount**delta.t
                st.n *= decay
                st.s *= decay
            st.n += delta.n
            st.s += delta.s
            st.pulls += delta.pulls
            st.t = st.t + delta.t
            if delta.window:
                hist = self._history.setdefault(key, deque())
                hist.extend(delta.frames)
                while len(hist) > delta.window:
                    for j, r in hist.popleft():
                        st.n[j] -= 1
                        st.s[j] -= r

    def reset(self, key: str) -> None:
        with self._lock:
            self._stats.pop(key, None)
            self._history.pop(key, None)

    def policies(self) -> list[str]:
        with self._lock:
            return sorted(self._stats)
