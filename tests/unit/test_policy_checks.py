"""Generic checks every policy must pass (as river's estimator checks do for its estimators).

Each check runs on every policy :func:`make_policy` can build, on the same synthetic bandit, so
a new policy is covered by adding it to :data:`NAMES`.
"""

from __future__ import annotations

import numpy as np
import pytest

from policy_store import POLICIES, MemoryStore, make_policy
from policy_store.offline import replay
from policy_store.stats import ArmStats, Delta

NAMES = [*POLICIES, "fixed:2"]
L = 4


def _bandit(seed: int = 0, n: int = 400):
    """Rewards (N, L) where arm 2 is best on average; every arm exits (no C_L needed)."""
    rng = np.random.default_rng(seed)
    means = np.array([0.1, 0.3, 0.6, 0.2])
    rewards = np.clip(means + rng.normal(0, 0.1, (n, L)), -1, 1)
    return rewards, np.ones((n, L), dtype=bool)


def test_every_registered_policy_is_checked():
    assert set(POLICIES) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_pull_returns_a_valid_arm_for_any_batch_shape(name):
    p = make_policy(name)
    for batch in [(), (3,), (2, 5)]:
        arms = np.asarray(p.pull(ArmStats.zeros(L, batch)))
        assert arms.shape == batch
        assert ((arms >= 0) & (arms < L)).all()


@pytest.mark.parametrize("name", NAMES)
def test_pull_batch_leaves_the_statistics_alone(name):
    p = make_policy(name)
    st = ArmStats.zeros(L)
    st.n[:], st.s[:], st.t = [3, 2, 1, 1], [0.3, 0.8, 0.6, 0.1], np.array(7.0)
    before = st.to_dict()
    arms = p.pull_batch(st, 16)
    assert len(arms) == 16 and all(0 <= a < L for a in arms)
    assert st.to_dict() == before


@pytest.mark.parametrize("name", NAMES)
def test_replay_is_seeded_and_deterministic(name):
    rewards, exits = _bandit()
    orders = np.stack([np.random.default_rng(s).permutation(len(rewards)) for s in (1, 2)])
    a = replay(make_policy(name), rewards[None], exits[None], orders).arms
    b = replay(make_policy(name), rewards[None], exits[None], orders).arms
    assert (a == b).all()


@pytest.mark.parametrize("name", [n for n in NAMES if not n.startswith("fixed")])
def test_learning_policies_find_the_best_arm(name):
    rewards, exits = _bandit(n=2000)
    orders = np.random.default_rng(3).permutation(len(rewards))[None]
    arms = replay(make_policy(name), rewards[None], exits[None], orders).arms[0, 0]
    late = arms[-500:]
    assert np.bincount(late, minlength=L).argmax() == 2  # D-UCB/SW-UCB keep exploring more
    assert np.mean(late == 2) > 0.6


@pytest.mark.parametrize("name", NAMES)
def test_offline_update_and_a_store_delta_agree(name):
    """One frame at a time offline (``update``) and the same frames as one live delta per frame
    through a store (``Delta.add`` + ``ArmStats.apply``) give the same statistics."""
    p = make_policy(name, discount=0.9, window=5)
    rewards, exits = _bandit(n=30)
    offline = ArmStats.zeros(L)
    store = MemoryStore(L)
    for i, row in enumerate(rewards):
        arm = int(p.pull(offline))
        mask = p.observe(np.array(arm), np.ones(L, bool), exits[i], np.array(True))
        p.update(offline, mask, row, pulled=arm)
        d = p.delta(L)
        d.add(
            arm, [(arm, row[arm]), *[(j, row[j]) for j in np.flatnonzero(mask) if j != arm]], f"{i}"
        )
        store.apply("k", d)
    live = store.read("k")
    for f in ("n", "s", "pulls"):
        assert getattr(live, f) == pytest.approx(getattr(offline, f), abs=1e-9), f
    assert float(live.t) == float(offline.t) == 30


@pytest.mark.parametrize("name", NAMES)
def test_deltas_carry_the_policys_discount_and_window(name):
    p = make_policy(name, discount=0.9, window=5)
    d = p.delta(L)
    assert isinstance(d, Delta)
    assert (d.discount, d.window) == (p.discount, p.window)
