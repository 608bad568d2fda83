"""The Redis policy store against a real redis-server: atomic batches, no lost updates."""

from __future__ import annotations

import multiprocessing as mp
import uuid

import numpy as np
import pytest

from policy_store import Delta, MemoryStore
from policy_store.redis_store import RedisStore
from tests.isolated_batch import check_one_raising_record_among_good_ones


@pytest.fixture
def store(redis_server):
    s = RedisStore(redis_server, f"test-{uuid.uuid4().hex[:8]}", num_arms=4, cache_ms=0)
    yield s
    for k in s.policies():
        s.reset(k)


def _deltas(seed: int, n: int) -> list[Delta]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        d = Delta.zeros(4)
        for _ in range(rng.integers(1, 8)):
            arm = int(rng.integers(0, 4))
            obs = [(arm, float(rng.normal()))] + [(j, float(rng.normal())) for j in range(arm)]
            d.add(arm, obs)
        out.append(d)
    return out


def _worker(url: str, ns: str, seed: int) -> None:
    s = RedisStore(url, ns, num_arms=4, cache_ms=0)
    for d in _deltas(seed, 150):
        s.apply("global", d)


def test_concurrent_processes_lose_no_update(store, redis_server):
    procs = [
        mp.get_context("spawn").Process(target=_worker, args=(redis_server, store.namespace, i))
        for i in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    ref = MemoryStore(4)
    for i in range(4):
        for d in _deltas(i, 150):
            ref.apply("global", d)
    got, want = store.read("global"), ref.read("global")
    assert np.array_equal(got.n, want.n)
    assert np.array_equal(got.pulls, want.pulls)
    assert float(got.t) == float(want.t)
    assert np.allclose(got.s, want.s, atol=1e-9)


def test_reads_are_cached_for_a_few_ms(redis_server):
    s = RedisStore(redis_server, f"test-{uuid.uuid4().hex[:8]}", num_arms=4, cache_ms=60_000)
    other = RedisStore(redis_server, s.namespace, num_arms=4, cache_ms=0)
    assert s.read("p").t == 0
    d = Delta.zeros(4)
    d.add(1, [(1, 0.5)])
    other.apply("p", d)
    assert s.read("p").t == 0  # cached
    s.apply("p", d)  # own writes drop the cache
    assert s.read("p").t == 2
    s.reset("p")


def test_snapshot_restore_roundtrip_and_validation(store, tmp_path):
    d = Delta.zeros(4)
    d.add(2, [(2, 0.25), (0, 0.5)])
    store.apply("global", d)
    store.apply("cam:cam-1", d)
    snap = store.snapshot()
    assert snap["format"] == "splitee-policy-snapshot/1"
    assert set(snap["policies"]) == {"global", "cam:cam-1"}
    store.reset("global")
    store.apply("other", d)
    assert store.restore(snap) == ["cam:cam-1", "global"]
    assert store.policies() == ["cam:cam-1", "global"]
    assert store.read("global").n.tolist() == [1, 0, 1, 0]
    with pytest.raises(ValueError, match="format"):
        store.restore({"format": "nope"})
    with pytest.raises(ValueError, match="arms"):
        store.restore({**snap, "arms": 9})


def test_arm_count_mismatch_is_refused(store):
    d = Delta.zeros(4)
    d.add(0, [(0, 1.0)])
    store.apply("global", d)
    wrong = RedisStore(client=store.r, namespace=store.namespace, num_arms=5, cache_ms=0)
    with pytest.raises(Exception, match="4 arms"):
        wrong.apply("global", _one(5))


def _one(arms: int) -> Delta:
    d = Delta.zeros(arms)
    d.add(0, [(0, 1.0)])
    return d


def test_one_raising_record_among_good_ones_is_isolated_and_the_rest_applied(
    redis_server, tiny_model, sample_frames
):
    """Before Delta.merge kept the frame ids, the merged delta of the good frames made the
    store raise, and the worker fail-stopped on every retry of the batch."""
    arms = len(tiny_model.exit_depths)
    store = RedisStore(redis_server, f"test-{uuid.uuid4().hex[:8]}", num_arms=arms, cache_ms=0)
    try:
        check_one_raising_record_among_good_ones(tiny_model, sample_frames.images, store)
    finally:
        store.reset("global")


def test_the_measured_uplink_rate_is_shared_through_redis(store, redis_server):
    """The cloud publishes its estimate, an edge worker (another client) reads it at most once
    a second; a value that is not a rate is ignored, an expired one falls back to None (the
    configured rate)."""
    edge = RedisStore(redis_server, store.namespace, num_arms=4)
    assert edge.shared_rate() is None
    store.publish_rate(2e6)
    edge._rate = (-1e9, None)  # the next read goes to Redis
    assert edge.shared_rate() == 2e6
    store.publish_rate(10e6)
    assert 0 < store.r.ttl(store.rate_key()) <= RedisStore.RATE_TTL_S  # expires unless renewed
    assert edge.shared_rate() == 2e6  # read less than a second ago: the cached value
    edge._rate = (-1e9, edge._rate[1])
    assert edge.shared_rate() == 10e6
    store.r.set(store.rate_key(), b"nan")  # not a rate: the last one stands
    edge._rate = (-1e9, edge._rate[1])
    assert edge.shared_rate() == 10e6
    store.r.delete(store.rate_key())  # expired
    edge._rate = (-1e9, edge._rate[1])
    assert edge.shared_rate() is None
