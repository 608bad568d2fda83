"""Vectorised offline replay of bandit policies over many streams at once.

A *stream* is one random order of the frames of one setting. All streams (settings × runs)
advance together, one frame per step, so each step is a handful of numpy operations on
``(streams, arms)`` arrays regardless of how many streams there are. The policy objects are the
same ones the live workers use (:mod:`policy_store.policies`), and so is the rule of which
arms a frame reveals (:meth:`~policy_store.policies.Policy.observe`, also behind
:func:`policy_store.feedback.observations`).

Side observations come in two variants (algorithms.md, section 3):

* ``online``  — what a live worker can do: a shallower arm whose reward needs ``C_L`` is
  updated only when this frame reached the final exit (offloaded, or final arm);
* ``full``    — the full-matrix variant: every shallower arm is updated with its reward from the
  full confidence matrix, as if ``C_L`` were always known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policy_store.policies import Policy
from policy_store.stats import ArmStats


@dataclass(frozen=True)
class ReplayResult:
    """Chosen arm of every stream at every step: ``arms[s, r, t]`` for setting s, run r."""

    arms: np.ndarray

    @property
    def steps(self) -> int:
        return int(np.prod(self.arms.shape))


def random_orders(num_frames: int, runs: int, seed: int) -> np.ndarray:
    """(runs, N) independent random permutations of the frames, seeded."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(num_frames) for _ in range(runs)])


def replay(
    policy: Policy,
    rewards: np.ndarray,
    exits: np.ndarray,
    orders: np.ndarray,
    side: str = "online",
    split_arms: int | None = None,
) -> ReplayResult:
    """Replay ``policy`` over every (setting, order) pair.

    ``rewards`` and ``exits`` are (S, N, L): each setting's reward matrix and ``C_k ≥ α`` mask
    (final arm always True). ``orders`` is (R, T) frame indices. ``split_arms``: the L arms
    are (split arm, α) pairs over this many split arms (:meth:`Policy.observe`). Returns arms
    (S, R, T).
    """
    if side not in ("online", "full"):
        raise ValueError(f"side must be 'online' or 'full', not {side!r}")
    S, _, L = rewards.shape
    R, T = orders.shape
    B = S * R
    stats = ArmStats.zeros(L, (B,))
    arms_out = np.empty((B, T), dtype=np.int16)
    s_idx = np.repeat(np.arange(S), R)  # setting of each stream
    conf_known = np.ones((B, L), dtype=bool)  # offline, every exit up to the arm is computed
    rows = np.arange(B)
    full = side == "full"
    last = (split_arms or L) - 1  # the final split arm: C_L known wherever it is pulled
    for t in range(T):
        frames = np.tile(orders[:, t], S)
        r = rewards[s_idx, frames]
        ex = exits[s_idx, frames]
        a = policy.pull(stats)
        final_known = True if full else (~ex[rows, a]) | (a % (split_arms or L) == last)
        mask = policy.observe(a, conf_known, ex, final_known, split_arms)
        policy.update(stats, mask, r, pulled=a)
        arms_out[:, t] = a
    return ReplayResult(arms_out.reshape(S, R, T))
