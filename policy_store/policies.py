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

import numpy as np

from policy_store.stats import ArmStats, Delta


class Policy:
    """Base class: UCB-style index policies differ only in ``index``.

    ``discount`` and ``window`` say how statistics evolve between frames (1.0 and 0: they simply
    accumulate); every :class:`Delta` the policy makes carries them, and whoever applies it
    (:meth:`ArmStats.apply`, the Redis script) carries them out.
    """

    name = "policy"
    side_observations = False
    discount = 1.0
    window = 0

    def index(self, stats: ArmStats) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def pull(self, stats: ArmStats) -> np.ndarray:
        """Arm(s) to play: any never-observed arm first (lowest index), else argmax index."""
        idx = self.index(stats)
        idx = np.where(stats.n > 0, idx, np.inf)
        return np.argmax(idx, axis=-1)

    def pull_batch(self, stats: ArmStats, count: int) -> list[int]:
        """Arms for ``count`` frames of one stream from one statistics snapshot (live batches).

        UCB is deterministic, so a batch would otherwise give every frame the same arm. After
        each choice the chosen arm gets a *virtual* pull at its current mean: its exploration
        bonus shrinks (and ``t`` grows) without changing its estimate, so one batch spreads over
        the arms a sequential learner would try. The virtual pulls are never stored.

        >>> UCB1().pull_batch(ArmStats.zeros(3), 4)
        [0, 1, 2, 0]
        """
        local = stats.copy()
        out = []
        for _ in range(count):
            a = int(self.pull(local))
            out.append(a)
            mean = local.s[a] / local.n[a] if local.n[a] > 0 else 0.0
            local.n[a] += 1
            local.s[a] += mean
            local.t = local.t + 1
        return out

    def observe(
        self,
        arm: np.ndarray,
        conf_known: np.ndarray,
        exits: np.ndarray,
        final_known: np.ndarray,
        split_arms: int | None = None,
    ) -> np.ndarray:
        """(…, L) mask of arms whose reward this frame reveals — offline and live alike.

        ``arm`` (…,) chosen arms; ``conf_known`` (…, L) the exits whose confidence was computed;
        ``exits`` (…, L) the frame would leave the edge at that arm (``C_j ≥ α``, or j final);
        ``final_known`` (…,) whether ``C_L`` is known (the frame reached the final exit, at the
        edge or in the cloud). Without side observations only the pulled arm is updated; with
        them also every shallower computed arm whose reward is known: it exits there, or ``C_L``
        is known. ``split_arms``: the arms are (split arm, α) pairs over this many split arms
        (:class:`~policy_store.arms.ArmSpace`; bandit arm ``t·split_arms + k``); then every
        threshold of the pulled split arm and of each shallower one is a side observation
        too — the frame's confidences say where it would have exited under any α.

        Pulling (arm 1, α 0.9) with C = (0.3, 0.8): offloaded, so ``C_L`` is known, and arm 0
        and arm 1 at α 0.5 are revealed too; the final arm was not computed:

        >>> exits = np.array([[False, True, True, False, False, True]])  # α 0.5 | 0.9, 3 arms
        >>> ISplitEE().observe(np.array([4]), np.ones((1, 6), bool), exits, np.array([True]), 3)
        array([[ True,  True, False,  True,  True, False]])
        """
        arms = np.arange(conf_known.shape[-1])
        pulled = arms == np.asarray(arm)[..., None]
        if not self.side_observations:
            return pulled
        split = arms % (split_arms or len(arms))
        k = (np.asarray(arm) % (split_arms or len(arms)))[..., None]
        computable = exits | np.asarray(final_known)[..., None]
        return pulled | ((split <= k) & conf_known & computable)

    def delta(self, num_arms: int) -> Delta:
        """An empty change to this policy's statistics (a live batch adds frames to it)."""
        return Delta.zeros(num_arms, self.discount, self.window)

    def update(self, stats: ArmStats, mask: np.ndarray, rewards: np.ndarray, pulled=None) -> None:
        """Fold one frame (per stream) into ``stats``: ``mask`` arms get ``rewards``."""
        m = mask.astype(np.float64)
        if pulled is None:  # the pulled arm is the deepest updated one
            pulled = mask.shape[-1] - 1 - np.argmax(mask[..., ::-1], axis=-1)
        one_hot = np.arange(mask.shape[-1]) == np.asarray(pulled)[..., None]
        d = Delta(
            n=m,
            s=m * np.where(mask, rewards, 0.0),
            pulls=one_hot,
            t=1,
            discount=self.discount,
            window=self.window,
            frames=[(mask, rewards)] if self.window else [],
        )
        stats.apply(d)


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


class DiscountedUCB(UCB1):
    """D-UCB (Garivier & Moulines 2011): every statistic decays by ``discount`` per frame.

    Old rewards fade with a half-life of ``ln 2 / (1 - discount)`` frames, so after the best arm
    changes the index follows within a few half-lives. The exploration term uses the discounted
    total count ``Σ_j N_j`` in place of ``t``.

    >>> p = DiscountedUCB(discount=0.5)
    >>> st = ArmStats.zeros(2)
    >>> p.update(st, np.array([True, False]), np.array([1.0, 0.0]))
    >>> p.update(st, np.array([False, True]), np.array([0.0, 1.0]))
    >>> st.n.tolist(), float(st.t)
    ([0.5, 1.0], 2.0)
    """

    name = "ducb"

    def __init__(self, discount: float = 0.995, beta: float = 1.0, side: bool = False) -> None:
        if not 0 < discount <= 1:
            raise ValueError(f"discount must be in (0, 1], got {discount}")
        super().__init__(beta)
        self.discount = discount
        self.side_observations = side

    def index(self, stats: ArmStats) -> np.ndarray:
        n = np.maximum(stats.n, 1e-12)
        total = np.maximum(stats.n.sum(axis=-1, keepdims=True), 1.0)
        return stats.s / n + self.beta * np.sqrt(np.log(total) / n)


class SlidingWindowUCB(UCB1):
    """SW-UCB (Garivier & Moulines 2011): statistics over the last ``window`` frames only.

    An arm with no observation inside the window is played again, and ``ln t`` is capped at
    ``ln window``. The history is a ring buffer in ``stats.ring`` (offline) or a Redis list
    (live), trimmed atomically with every batch.

    >>> p = SlidingWindowUCB(window=2)
    >>> st = ArmStats.zeros(2)
    >>> for arm in (0, 0, 1):
    ...     p.update(st, np.arange(2) == arm, np.ones(2))
    >>> st.n.tolist()
    [1.0, 1.0]
    """

    name = "swucb"

    def __init__(self, window: int = 1000, beta: float = 1.0, side: bool = False) -> None:
        if window < 1:
            raise ValueError(f"window must be ≥ 1, got {window}")
        super().__init__(beta)
        self.window = int(window)
        self.side_observations = side

    def index(self, stats: ArmStats) -> np.ndarray:
        n = np.maximum(stats.n, 1e-12)
        t = np.minimum(np.maximum(np.asarray(stats.t, dtype=np.float64), 1.0), self.window)
        return stats.s / n + self.beta * np.sqrt(np.log(t)[..., None] / n)


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


POLICIES: dict[str, type[Policy]] = {
    "ucb1": UCB1,
    "isplitee": ISplitEE,
    "ducb": DiscountedUCB,
    "swucb": SlidingWindowUCB,
}


def make_policy(
    name: str,
    beta: float = 1.0,
    discount: float = 0.995,
    window: int = 1000,
    side: bool = False,
) -> Policy:
    """Build a policy by name: ``ucb1``, ``isplitee``, ``ducb``, ``swucb`` or ``fixed:<arm>``.

    ``discount``, ``window`` and ``side`` (side observations) apply to ``ducb``/``swucb``.
    """
    if name == "ducb":
        return DiscountedUCB(discount, beta, side)
    if name == "swucb":
        return SlidingWindowUCB(window, beta, side)
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
