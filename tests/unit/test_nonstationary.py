"""Non-stationary policies: discounted and sliding-window UCB, offline and in the stores."""

from __future__ import annotations

import numpy as np
import pytest

from policy_store import UCB1, CostModel, MemoryStore
from policy_store.offline import replay
from policy_store.policies import ArmStats, DiscountedUCB, SlidingWindowUCB, make_policy

CM = CostModel(depths=(3, 6, 9, 12), alpha=0.6, offload_cost=0.5)


def piecewise_problem(seed: int, phase: int = 4000):
    """Two phases with different best arms (as after a switch from daylight to night)."""
    rng = np.random.default_rng(seed)
    day = np.clip(rng.normal([0.85, 0.6, 0.7, 0.95], 0.1, (phase, 4)), 0, 1)
    night = np.clip(rng.normal([0.25, 0.95, 0.9, 0.5], 0.1, (phase, 4)), 0, 1)
    conf = np.concatenate([day, night])
    return CM.reward_matrix(conf), CM.exits_at(conf), phase


def regret_and_recovery(policy, runs: int = 4):
    regrets, recoveries = [], []
    for seed in range(runs):
        rewards, exits, phase = piecewise_problem(seed)
        arms = replay(policy, rewards[None], exits[None], np.arange(len(rewards))[None]).arms[0, 0]
        means = [rewards[:phase].mean(0), rewards[phase:].mean(0)]
        gaps = np.concatenate(
            [means[0].max() - means[0][arms[:phase]], means[1].max() - means[1][arms[phase:]]]
        )
        regrets.append(gaps.sum())
        best = int(means[1].argmax())
        after = (arms[phase:] == best).astype(float)
        share = np.convolve(after, np.ones(200) / 200, mode="valid")
        hit = np.flatnonzero(share >= 0.5)
        recoveries.append(int(hit[0]) if len(hit) else len(after))
    return float(np.mean(regrets)), int(np.max(recoveries))


def test_discounted_and_window_ucb_beat_ucb1_after_a_change():
    ucb_regret, ucb_rec = regret_and_recovery(UCB1())
    for pol in (DiscountedUCB(discount=0.995), SlidingWindowUCB(window=500)):
        regret, recovery = regret_and_recovery(pol)
        assert regret < ucb_regret, (pol.name, regret, ucb_regret)
        assert recovery <= 1000, (pol.name, recovery)  # the new best arm within 1,000 frames
        assert recovery < ucb_rec, (pol.name, recovery, ucb_rec)
        print(pol.name, round(regret, 1), recovery, "ucb1", round(ucb_regret, 1), ucb_rec)


def test_store_applies_decay_and_window_like_the_policy():
    rng = np.random.default_rng(1)
    for pol in (DiscountedUCB(0.9), SlidingWindowUCB(5)):
        offline = ArmStats.zeros(4)
        store = MemoryStore(4)
        for _ in range(40):
            arm = int(rng.integers(0, 4))
            r = float(rng.normal())
            pol.update(offline, np.arange(4) == arm, np.full(4, r))
            d = pol.delta(4)
            d.add(arm, [(arm, r)])
            store.apply("p", d)
        got = store.read("p")
        assert np.allclose(got.n, offline.n) and np.allclose(got.s, offline.s), pol.name
        assert got.pulls.tolist() == offline.pulls.tolist()


def test_make_policy_builds_nonstationary_ones():
    assert isinstance(make_policy("ducb", discount=0.99), DiscountedUCB)
    assert make_policy("swucb", window=50).window == 50
    with pytest.raises(ValueError):
        DiscountedUCB(discount=0)
