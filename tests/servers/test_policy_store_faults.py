"""The Redis policy store against a real Redis that is killed, restarted and fed bad updates."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest
import redis

from policy_store.redis_store import RedisStore
from policy_store.stats import Delta
from tests.servers.conftest import deploy


def _pid(deploy_env) -> int:
    return int((Path(deploy_env["SPLITEE_VAR_DIR"]) / "run" / "redis.pid").read_text())


def _delta(frames: range, arm: int = 1, reward: float = 0.5) -> Delta:
    d = Delta.zeros(4)
    for f in frames:
        d.add(arm, [(arm, reward), (0, 0.1)], frame_id=f"cam-1:{f}")
    return d


@pytest.fixture
def store(redis_server):
    return RedisStore(redis_server, f"t{uuid.uuid4().hex[:8]}", num_arms=4, cache_ms=0)


def test_a_batch_consumed_twice_counts_once(store):
    store.apply("global", _delta(range(10)))
    store.apply("global", _delta(range(5, 15)))  # frames 5..9 again (a crash replay)
    st = store.read("global")
    assert float(st.t) == 15 == st.pulls.sum()
    assert st.n.tolist() == [15, 15, 0, 0]
    assert store.duplicates == 5


def test_an_update_is_all_or_nothing(store):
    store.apply("global", _delta(range(3)))
    before = store.read("global")
    bad = _delta(range(3, 6))
    bad.records[1] = type(bad.records[1])("cam-1:x", 1, ((1, 1e300),))  # past the bound
    with pytest.raises(redis.ResponseError, match="bad reward"):
        store._send("global", bad)
    after = store.read("global")
    assert after.to_dict() == before.to_dict()
    with pytest.raises(ValueError):  # and a delta refuses such a reward in the first place
        Delta.zeros(4).add(1, [(1, float("inf"))])


def test_redis_killed_then_back_loses_no_update(store, deploy_env):
    store.apply("global", _delta(range(20)))
    assert store.read("global").t == 20
    os.kill(_pid(deploy_env), signal.SIGKILL)
    t0 = time.monotonic()
    for batch in range(5):  # the worker goes on: reads serve the cache, deltas queue up
        st = store.read("global")
        assert float(st.t) == 20 + 10 * batch  # its own pending updates are visible
        store.apply("global", _delta(range(100 + 10 * batch, 110 + 10 * batch)))
    assert time.monotonic() - t0 < 10, "no call may block on a dead Redis"
    assert not store.up and store.pending_frames == 50
    assert store.stats_age_s > 0
    deploy("redis-start.sh")  # AOF: the 20 frames applied before the crash survive it
    deadline = time.monotonic() + 15
    while not store.flush() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store.up and store.pending_frames == 0
    fresh = RedisStore(client=store.r, namespace=store.namespace, num_arms=4, cache_ms=0)
    st = fresh.read("global")
    assert float(st.t) == 70 == st.pulls.sum()
