"""Non-stationary policies in the shared Redis store: concurrent workers' updates."""

from __future__ import annotations

import multiprocessing as mp
import uuid

import numpy as np
import pytest

from policy_store import Delta, MemoryStore
from policy_store.policies import make_policy


def _apply_many(url: str, ns: str, policy_name: str, seed: int) -> None:
    from policy_store.redis_store import RedisStore

    pol = make_policy(policy_name, discount=0.99, window=60)
    s = RedisStore(url, ns, num_arms=4, cache_ms=0)
    for d in _deltas(pol, seed):
        s.apply("global", d)


def _deltas(pol, seed: int, count: int = 60) -> list[Delta]:
    rng = np.random.default_rng(seed)
    out = []
    for b in range(count):
        d = pol.delta(4)
        d.tag = f"{seed}:{b}"
        for _ in range(int(rng.integers(1, 6))):
            arm = int(rng.integers(0, 4))
            d.add(
                arm, [(arm, float(rng.normal()))] + [(j, float(rng.normal())) for j in range(arm)]
            )
        out.append(d)
    return out


@pytest.mark.parametrize("name", ["ducb", "swucb"])
def test_concurrent_redis_updates_equal_one_process_applying_them(redis_server, name):
    from policy_store.redis_store import RedisStore

    ns = f"test-{uuid.uuid4().hex[:8]}"
    procs = [
        mp.get_context("spawn").Process(target=_apply_many, args=(redis_server, ns, name, i))
        for i in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    live = RedisStore(redis_server, ns, num_arms=4, cache_ms=0)
    # One process applying the same deltas in the order Redis applied them.
    pol = make_policy(name, discount=0.99, window=60)
    by_tag = {d.tag: d for i in range(3) for d in _deltas(pol, i)}
    order = live.applied_tags("global")
    assert sorted(order) == sorted(by_tag)
    ref = MemoryStore(4)
    for tag in order:
        ref.apply("global", by_tag[tag])
    got, want = live.read("global"), ref.read("global")
    assert np.allclose(got.n, want.n, atol=1e-9) and np.allclose(got.s, want.s, atol=1e-9)
    assert got.pulls.tolist() == want.pulls.tolist() and float(got.t) == float(want.t)
    live.reset("global")
