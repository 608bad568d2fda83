"""Generic checks every policy and every transmission decision must pass (as river's estimator
checks do for its estimators).

Each policy check runs on every policy :func:`make_policy` can build, on the same synthetic
bandit, so a new policy is covered by adding it to :data:`NAMES`; each TD check runs on every
:class:`TDMechanism` of :data:`TDS`. Two tests fail when a class is added without being listed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from policy_store import POLICIES, CostModel, MemoryStore, make_policy
from policy_store.decisions import AlphaRule, Always, Never, TDInputs, TDMechanism
from policy_store.offline import random_orders, replay
from policy_store.policies import Policy
from policy_store.stats import ArmStats, Delta
from splitee.td import Learned, Oracle, SNRThreshold

NAMES = [*POLICIES, "fixed:2"]
L = 4


def _subclasses(cls: type) -> set[type]:
    """Every class below ``cls``, however deep."""
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub, *_subclasses(sub)}
    return out


def _bandit(seed: int = 0, n: int = 400):
    """Rewards (N, L) where arm 2 is best on average; every arm exits (no C_L needed)."""
    rng = np.random.default_rng(seed)
    means = np.array([0.1, 0.3, 0.6, 0.2])
    rewards = np.clip(means + rng.normal(0, 0.1, (n, L)), -1, 1)
    return rewards, np.ones((n, L), dtype=bool)


def test_every_registered_policy_is_checked():
    assert set(POLICIES) <= set(NAMES)
    assert _subclasses(Policy) <= {type(make_policy(n)) for n in NAMES}


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


# Regret on a stationary bandit, by what each policy promises there: the stationary ones learn
# (regret grows sublinearly); the non-stationary ones keep exploring on purpose (their regret
# grows linearly, but at a rate that does not rise and is well below picking at random); a
# fixed arm pays exactly its gap every frame.
REGRET = {"ucb1": "sublinear", "isplitee": "sublinear", "ducb": "bounded", "swucb": "bounded"}
CM = CostModel(depths=(3, 6, 9, 12), gamma=0.1, mu=1.0, alpha=0.6, offload_cost=0.5)


def test_every_policy_has_a_regret_promise():
    assert {n for n in NAMES if not n.startswith("fixed")} == set(REGRET)


@pytest.mark.parametrize("name", NAMES)
def test_regret_on_a_stationary_bandit(name):
    n = 20_000
    conf = np.clip(np.random.default_rng(5).normal((0.45, 0.6, 0.75, 0.7), 0.15, (n, L)), 0, 1)
    rewards, exits = CM.reward_matrix(conf)[None], CM.exits_at(conf)[None]
    arms = replay(make_policy(name), rewards, exits, random_orders(n, 5, seed=2)).arms[0]
    means = rewards[0].mean(0)
    gaps = means.max() - means
    regret = np.cumsum(gaps[arms], axis=1).mean(0)
    first, second = regret[n // 2 - 1], regret[-1] - regret[n // 2 - 1]
    if name.startswith("fixed"):
        k = int(name.split(":")[1]) - 1  # 1-based, as in the settings
        assert regret[-1] == pytest.approx(n * gaps[k])
    elif REGRET[name] == "sublinear":
        assert second < 0.5 * first  # log-like growth
        assert regret[-1] / n < 0.1 * (means.max() - means.min())  # per frame, it vanishes
    else:
        assert second <= 1.05 * first
        assert regret[-1] < 0.5 * n * gaps.mean()  # uniform picks pay gaps.mean() a frame


# Transmission decisions: every mechanism, fitted where it must be on frames it then decides
# apart from (the oracle is given the outcomes of the frames it decides).
TDS = ("always", "never", "alpha", "snr-threshold", "learned", "oracle")


def _td_frames(seed: int, n: int = 600):
    """Frames with softmax statistics, an SNR each, and whether edge and server were right."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(10, 0.3), n)
    snr = rng.uniform(-5, 20, n)
    edge = rng.random(n) < probs.max(1)
    server = rng.random(n) < 1 / (1 + np.exp(-snr / 4))
    return TDInputs.from_probs(probs, snr), edge, server


def _td(name: str, edge: np.ndarray, server: np.ndarray) -> TDMechanism:
    fit, fit_edge, fit_server = _td_frames(1)
    if name == "snr-threshold":
        return SNRThreshold.fit(fit, fit_edge, fit_server, [0.0, 10.0], penalty=0.01)
    if name == "learned":
        return Learned.fit(fit, fit_edge, fit_server, penalty=0.01)
    if name == "oracle":
        return Oracle(edge, server)
    return {"always": Always(), "never": Never(), "alpha": AlphaRule(0.5)}[name]


def test_every_td_mechanism_is_checked():
    _, edge, server = _td_frames(0)
    assert _subclasses(TDMechanism) <= {type(_td(n, edge, server)) for n in TDS}


@pytest.mark.parametrize("name", TDS)
def test_td_decides_every_frame_alone(name):
    """One bool per frame, and a frame's decision depends on that frame only (its order in the
    batch and its neighbours change nothing), as the live edge needs it."""
    x, edge, server = _td_frames(0)
    out = _td(name, edge, server).transmit(x)
    assert out.dtype == bool and out.shape == (len(x),)
    perm = np.random.default_rng(2).permutation(len(x))
    again = _td(name, edge[perm], server[perm]).transmit(x.take(perm))
    assert (again == out[perm]).all()


@pytest.mark.parametrize("name", TDS)
def test_td_describes_itself_as_json(name):
    _, edge, server = _td_frames(0)
    td = _td(name, edge, server)
    described = json.loads(json.dumps(td.describe()))
    assert described["name"] == td.name
