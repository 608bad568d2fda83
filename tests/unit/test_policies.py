"""Rewards, side observations and UCB1 on hand-made inputs and synthetic bandits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from policy_store import UCB1, CostModel, Delta, ISplitEE, MemoryStore, make_policy
from policy_store.arms import ArmSpace
from policy_store.feedback import observations
from policy_store.offline import random_orders, replay
from policy_store.stats import ArmStats

CM = CostModel(depths=(3, 6, 9, 12), gamma=0.1, mu=1.0, alpha=0.6, offload_cost=0.5)


def test_costs_follow_depth():
    assert np.allclose(CM.compute_cost, [0.3, 0.6, 0.9, 1.2])
    assert CM.final_cost == pytest.approx(1.2)


def test_reward_rules_on_hand_made_rows():
    conf = np.array(
        [
            [0.9, 0.95, 0.97, 0.99],  # confident everywhere: every early arm exits
            [0.3, 0.5, 0.7, 0.8],  # arms 0, 1 offload (need C_L = 0.8), arm 2 exits
        ]
    )
    r = CM.reward_matrix(conf)
    assert r[0].tolist() == pytest.approx([0.9 - 0.3, 0.95 - 0.6, 0.97 - 0.9, 0.99 - 1.2])
    assert r[1].tolist() == pytest.approx([0.8 - 0.8, 0.8 - 1.1, 0.7 - 0.9, 0.8 - 1.2])
    costs = CM.cost_matrix(conf)
    assert costs[1].tolist() == pytest.approx([0.8, 1.1, 0.9, 1.2])
    # the live rule agrees with the matrix
    assert dict(_obs(0, conf[1, :1], 0.8, side=False))[0] == pytest.approx(r[1, 0])
    with pytest.raises(ValueError, match="needs C_L"):
        _obs(0, conf[1, :1], None)


def _obs(arm, conf, c_final, side=True, policy=None):
    row = [*map(float, conf), *[float("nan")] * (CM.num_arms - len(conf))]
    return observations(
        policy or ISplitEE(), CM, ArmSpace(CM.num_arms), arm, row, c_final, None, side
    )


def test_side_observations_online_rule():
    # Arm 2 pulled and it exits (C_2 = 0.7 ≥ 0.6): C_L unknown.
    obs = dict(_obs(2, [0.3, 0.65, 0.7], None))
    assert set(obs) == {2, 1}  # arm 0 needs C_L: not updated online
    assert obs[1] == pytest.approx(0.65 - 0.6)
    # Arm 2 offloaded (C_2 = 0.4): C_L known from the cloud, every shallower arm is revealed.
    obs = dict(_obs(2, [0.3, 0.65, 0.4], 0.9))
    assert obs == pytest.approx({2: 0.9 - 1.4, 1: 0.65 - 0.6, 0: 0.9 - 0.8})
    # Without side observations (or a policy without them) only the pulled arm.
    assert [a for a, _ in _obs(2, [0.3, 0.65, 0.4], 0.9, side=False)] == [2]
    assert [a for a, _ in _obs(2, [0.3, 0.65, 0.4], 0.9, policy=UCB1())] == [2]


def test_final_arm_at_the_edge_reveals_what_the_offline_replay_reveals():
    # The final arm ran at the edge, so C_L is known there: arm 0 (C < α) is revealed too, as
    # the offline replay's online variant does (it used to be skipped live).
    conf = [0.3, 0.65, 0.2, 0.8]
    obs = dict(_obs(3, conf, None))
    assert set(obs) == {0, 1, 2, 3}
    expect = CM.reward_matrix(np.array([conf]))[0]
    assert [obs[j] for j in range(4)] == pytest.approx(expect.tolist())
    exits = CM.exits_at(np.array(conf))
    mask = ISplitEE().observe(np.array(3), np.ones(4, bool), exits, np.array(True))
    assert set(np.flatnonzero(mask)) == set(obs)


def test_policy_observe_mask_matches_scalar_rule():
    p = ISplitEE()
    exits = np.array([False, True, True, True])
    known = np.ones(4, bool)
    m = p.observe(np.array(2), known, exits, np.array(False))
    assert m.tolist() == [False, True, True, False]
    m = p.observe(np.array(2), known, exits, np.array(True))
    assert m.tolist() == [True, True, True, False]
    assert UCB1().observe(np.array(2), known, exits, np.array(True)).tolist() == [
        False,
        False,
        True,
        False,
    ]


def reference_ucb1(rewards: np.ndarray, beta: float) -> list[int]:
    """A plain loop written straight from the formula in algorithms.md."""
    n_arms = rewards.shape[1]
    S, N = [0.0] * n_arms, [0] * n_arms
    chosen = []
    for t, row in enumerate(rewards):
        if t < n_arms:
            a = t  # play every arm once
        else:
            ucb = [S[k] / N[k] + beta * math.sqrt(math.log(t) / N[k]) for k in range(n_arms)]
            a = max(range(n_arms), key=lambda k: (ucb[k], -k))
        S[a] += row[a]
        N[a] += 1
        chosen.append(a)
    return chosen


def test_ucb1_matches_reference_loop():
    rng = np.random.default_rng(3)
    conf = np.clip(rng.normal([0.5, 0.6, 0.7, 0.9], 0.2, size=(400, 4)), 0, 1)
    rewards = CM.reward_matrix(conf)
    exits = CM.exits_at(conf)
    order = np.arange(400)[None, :]
    got = replay(UCB1(beta=1.0), rewards[None], exits[None], order).arms[0, 0].tolist()
    assert got == reference_ucb1(rewards, 1.0)


def test_vectorised_replay_equals_one_stream_at_a_time():
    rng = np.random.default_rng(4)
    conf = np.clip(rng.normal([0.5, 0.6, 0.7, 0.9], 0.2, size=(2, 300, 4)), 0, 1)
    rewards = np.stack([CM.reward_matrix(c) for c in conf])
    exits = np.stack([CM.exits_at(c) for c in conf])
    orders = random_orders(300, 3, seed=1)
    batched = replay(ISplitEE(), rewards, exits, orders).arms
    for s in range(2):
        for r in range(3):
            one = replay(ISplitEE(), rewards[s : s + 1], exits[s : s + 1], orders[r : r + 1])
            assert (one.arms[0, 0] == batched[s, r]).all()


def synthetic_problem(rng, n: int, means=(0.45, 0.6, 0.75, 0.7)):
    conf = np.clip(rng.normal(means, 0.15, size=(n, len(means))), 0, 1)
    return CM.reward_matrix(conf)[None], CM.exits_at(conf)[None]


def test_pull_plays_unobserved_arms_first_then_index():
    p = UCB1()
    st = ArmStats.zeros(3)
    st.n[:] = [5, 0, 5]
    st.s[:] = [1, 0, 4]
    st.t = np.array(10.0)
    assert int(p.pull(st)) == 1
    st.n[1], st.s[1] = 5, 0.5
    assert int(p.pull(st)) == 2


def test_memory_store_applies_batched_deltas():
    store = MemoryStore(4)
    d = Delta.zeros(4)
    d.add(2, _obs(2, [0.3, 0.65, 0.4], 0.9))
    d.add(3, [(3, 0.2)])
    store.apply("cam-1", d)
    st = store.read("cam-1")
    assert st.n.tolist() == [1, 1, 1, 1]
    assert st.pulls.tolist() == [0, 0, 1, 1]
    assert float(st.t) == 2 == st.pulls.sum()
    assert store.policies() == ["cam-1"]
    store.reset("cam-1")
    assert store.read("cam-1").t == 0


def test_make_policy():
    assert isinstance(make_policy("isplitee"), ISplitEE)
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("nope")


def test_side_observations_reach_every_threshold_of_the_computed_arms():
    """(arm, α) pairs: a frame's confidences say where it would have exited under any α, so
    I-SplitEE learns the pairs of the pulled arm and the shallower ones together — live and in
    the offline replay alike; UCB1 (no side observations) only the pulled pair."""
    space = ArmSpace(CM.num_arms, alpha_grid=(0.5, 0.9))
    conf = [0.3, 0.7, float("nan"), float("nan")]
    # pulled (arm 1, α 0.9): C_1 = 0.7 < 0.9, offloaded, the cloud's C_L = 0.95 is known
    pick = space.encode(1, 1)
    obs = dict(observations(ISplitEE(), CM, space, pick, conf, 0.95, None, True))
    lam, o = CM.compute_cost, CM.offload_cost
    assert obs == pytest.approx(
        {
            pick: 0.95 - lam[1] - o,  # the pulled pair
            space.encode(1, 0): 0.7 - lam[1],  # α 0.5: exits at arm 1
            space.encode(0, 0): 0.95 - lam[0] - o,  # C_0 = 0.3 < α: offloads, C_L known
            space.encode(0, 1): 0.95 - lam[0] - o,
        }
    )
    assert list(dict(observations(UCB1(), CM, space, pick, conf, 0.95, None, True))) == [pick]
    # pulled (arm 1, α 0.5): exits, C_L unknown — the α 0.9 pair (an offload) is not revealed
    exited = dict(observations(ISplitEE(), CM, space, space.encode(1, 0), conf, None, None, True))
    assert set(exited) == {space.encode(1, 0)}
    # the offline replay reveals the same pairs from the same frame
    exits = np.concatenate([CM.with_alpha(a).exits_at(np.nan_to_num(conf)) for a in (0.5, 0.9)])
    known = np.tile(~np.isnan(conf), 2)
    mask = ISplitEE().observe(np.array(pick), known, exits, np.array(True), CM.num_arms)
    assert set(np.flatnonzero(mask)) == set(obs)


def test_isplitee_over_pairs_finds_the_best_pair_with_fewer_pulls_of_the_rest():
    """On a synthetic stream whose best pair is a deep threshold, I-SplitEE's side
    observations across thresholds reach it with less regret than UCB1 over the pairs."""
    rng = np.random.default_rng(0)
    n, grid = 3000, (0.5, 0.7, 0.9)
    conf = np.clip(rng.beta(5, 2, size=(n, CM.num_arms)), 0, 1)
    conf[:, -1] = np.clip(conf[:, -1] + 0.2, 0, 1)
    cms = [CM.with_alpha(a) for a in grid]
    rewards = np.concatenate([cm.reward_matrix(conf) for cm in cms], axis=1)[None]
    exits = np.concatenate([cm.exits_at(conf) for cm in cms], axis=1)[None]
    orders = random_orders(n, 4, 0)
    best = rewards[0].mean(axis=0).max()

    def regret(policy, split):
        arms = replay(policy, rewards, exits, orders, split_arms=split).arms[0]
        return float((best - rewards[0].mean(axis=0)[arms]).sum(axis=1).mean())

    assert regret(ISplitEE(), CM.num_arms) < regret(UCB1(), None)
