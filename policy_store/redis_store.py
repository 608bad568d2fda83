"""Bandit statistics shared by every worker through Redis — and ridden through Redis outages.

Layout: one hash per policy at ``<namespace>:{<policy>}:arms`` (the ``{…}`` hash tag keeps a
policy's keys on one Redis Cluster slot) with fields ``n:<arm>`` (observations), ``s:<arm>``
(reward sum), ``p:<arm>`` (decisions), ``t`` (frames) and ``arms`` (arm count); beside it the
sliding window's history (``:window``), the ids of recently applied frames (``:seen``) and a log
of tagged deltas (``:log``).

A worker applies a whole batch as one :class:`~policy_store.stats.Delta` with one ``EVALSHA``
of a Lua script that carries out what the delta says (decay, window, increments) — the same
steps as :meth:`~policy_store.stats.ArmStats.apply` — atomically, so concurrent workers lose no
update. The script first validates every number and arm (an update is all-or-nothing), then
skips frames whose id it applied before: a batch consumed twice after a crash does not count
its rewards twice (ids are kept for the last ``dedup_frames`` frames of each policy).

Outages: reads are cached for ``cache_ms`` milliseconds; while Redis is unreachable a read
returns the last statistics read (plus this worker's own pending updates), and its age is
exported by the worker (:attr:`RedisStore.stats_age_s`). Deltas wait in a buffer and are
applied in order once Redis answers again (reconnect with exponential backoff up to 2 s);
when ``max_pending_frames`` frames are waiting, :meth:`apply` blocks — which pauses the
worker's consumption — until Redis is back. Nothing in here exits on an outage. Buffered deltas
of a worker that dies during an outage are lost: the statistics miss those frames, no frame is
lost.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from pathlib import Path

import numpy as np
import redis
from redis.exceptions import AuthenticationError, NoPermissionError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from policy_store.stats import REWARD_BOUND, ArmStats, Delta
from policy_store.uplink import valid_rate

log = logging.getLogger("splitee.policy_store")

SNAPSHOT_FORMAT = "splitee-policy-snapshot/1"
OUTAGE = (RedisConnectionError, RedisTimeoutError, OSError)
#: Not an outage but a configuration fault (wrong credentials, missing ACL rights): re-raised,
#: so the worker stops with a clear error instead of buffering forever.
REFUSED = (AuthenticationError, NoPermissionError)

# KEYS: statistics hash, window list, tag log, seen frame ids (sorted set).
# ARGV: arms, discount, window, tag, dedup cap, frame count, then per frame: frame id, pulled
# arm, observations "arm,reward;arm,reward". Returns the number of duplicate frames skipped.
_APPLY = """
local key, hist, logk, seen = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local arms = tonumber(ARGV[1])
local cur = redis.call('HGET', key, 'arms')
if cur and tonumber(cur) ~= arms then
  return redis.error_reply('policy has ' .. cur .. ' arms, update has ' .. ARGV[1])
end
local discount, window, cap = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
local bound = tonumber(ARGV[7 + 3 * tonumber(ARGV[6])])
local function arm_ok(a) return a and a >= 0 and a < arms and a == math.floor(a) end
local frames = {}
for f = 0, tonumber(ARGV[6]) - 1 do
  local fid, pick, obs = ARGV[7 + 3 * f], tonumber(ARGV[8 + 3 * f]), ARGV[9 + 3 * f]
  if not arm_ok(pick) then return redis.error_reply('bad arm ' .. ARGV[8 + 3 * f]) end
  local pairs_ = {}
  for a, r in string.gmatch(obs, '([^,;]+),([^;]+)') do
    local ai, rv = tonumber(a), tonumber(r)
    if not arm_ok(ai) then return redis.error_reply('bad arm ' .. a) end
    if not rv or rv ~= rv or rv > bound or rv < -bound then
      return redis.error_reply('bad reward ' .. r)
    end
    pairs_[#pairs_ + 1] = {ai, rv}
  end
  frames[#frames + 1] = {fid, pick, obs, pairs_}
end
local fresh, dups = {}, 0
for _, fr in ipairs(frames) do
  if fr[1] ~= '' and redis.call('ZSCORE', seen, fr[1]) then dups = dups + 1
  else fresh[#fresh + 1] = fr end
end
if #fresh == 0 then return dups end
redis.call('HSET', key, 'arms', ARGV[1])
if discount ~= 1 then
  local decay = discount ^ #fresh
  for a = 0, arms - 1 do
    for _, p in ipairs({'n:', 's:'}) do
      local v = redis.call('HGET', key, p .. a)
      if v then redis.call('HSET', key, p .. a, string.format('%.17g', tonumber(v) * decay)) end
    end
  end
end
local dn, ds, dp = {}, {}, {}
for _, fr in ipairs(fresh) do
  dp[fr[2]] = (dp[fr[2]] or 0) + 1
  for _, pr in ipairs(fr[4]) do
    dn[pr[1]] = (dn[pr[1]] or 0) + 1
    ds[pr[1]] = (ds[pr[1]] or 0) + pr[2]
  end
end
for a, v in pairs(dn) do redis.call('HINCRBYFLOAT', key, 'n:' .. a, string.format('%.17g', v)) end
for a, v in pairs(ds) do redis.call('HINCRBYFLOAT', key, 's:' .. a, string.format('%.17g', v)) end
for a, v in pairs(dp) do redis.call('HINCRBYFLOAT', key, 'p:' .. a, string.format('%.17g', v)) end
local t = tonumber(redis.call('HINCRBYFLOAT', key, 't', #fresh))
if cap > 0 then
  for i, fr in ipairs(fresh) do
    if fr[1] ~= '' then redis.call('ZADD', seen, t - #fresh + i, fr[1]) end
  end
  redis.call('ZREMRANGEBYRANK', seen, 0, -cap - 1)
end
if ARGV[4] ~= '' then
  redis.call('RPUSH', logk, ARGV[4])
  redis.call('LTRIM', logk, -10000, -1)
end
if window > 0 then
  for _, fr in ipairs(fresh) do redis.call('RPUSH', hist, fr[3]) end
  local excess = redis.call('LLEN', hist) - window
  while excess > 0 do
    local old = redis.call('LPOP', hist)
    for a, r in string.gmatch(old, '([^,;]+),([^;]+)') do
      redis.call('HINCRBYFLOAT', key, 'n:' .. a, '-1')
      local neg = (string.sub(r, 1, 1) == '-') and string.sub(r, 2) or ('-' .. r)
      redis.call('HINCRBYFLOAT', key, 's:' .. a, neg)
    end
    excess = excess - 1
  end
end
return dups
"""


class RedisStore:
    """A :class:`~policy_store.store.PolicyStore` on Redis that rides out Redis outages."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        namespace: str = "splitee",
        num_arms: int = 9,
        cache_ms: float = 5.0,
        client: redis.Redis | None = None,
        max_pending_frames: int = 100_000,
        dedup_frames: int = 100_000,
        timeout_s: float = 2.0,
    ) -> None:
        self.r = client or redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self.namespace = namespace
        self.num_arms = num_arms
        self.cache_s = cache_ms / 1000.0
        self.max_pending_frames = max_pending_frames
        self.dedup_frames = dedup_frames
        self._apply = self.r.register_script(_APPLY)
        self._cache: dict[str, tuple[float, ArmStats]] = {}
        self._pending: deque[tuple[str, Delta]] = deque()
        self.pending_frames = 0  # frames whose deltas wait for Redis
        self.duplicates = 0  # frames skipped because their reward was applied before
        self.up = True
        self._retry_at = 0.0
        self._backoff = 0.1
        self._rate: tuple[float, float | None] = (-1e9, None)  # (read at, rate) of the board

    # ------------------------------------------------------------------ connection state
    def _may_try(self) -> bool:
        return self.up or time.monotonic() >= self._retry_at

    def _down(self, exc: BaseException) -> None:
        if isinstance(exc, REFUSED):
            raise exc
        if self.up:
            log.warning("redis unreachable; serving cached statistics", extra={"error": str(exc)})
        else:
            self._backoff = min(self._backoff * 2, 2.0)
        self.up = False
        self._retry_at = time.monotonic() + self._backoff

    def _up(self) -> None:
        if not self.up:
            log.warning("redis reachable again", extra={"pending_frames": self.pending_frames})
        self.up, self._backoff = True, 0.1

    @property
    def stats_age_s(self) -> float:
        """Age of the oldest cached statistics in use (0 while Redis answers)."""
        if self.up or not self._cache:
            return 0.0
        return time.monotonic() - min(ts for ts, _ in self._cache.values())

    def key(self, policy: str) -> str:
        return f"{self.namespace}:{{{policy}}}:arms"

    def history_key(self, policy: str) -> str:
        return f"{self.namespace}:{{{policy}}}:window"

    def seen_key(self, policy: str) -> str:
        """Ids of the frames applied last (de-duplication of re-consumed batches)."""
        return f"{self.namespace}:{{{policy}}}:seen"

    def log_key(self, policy: str) -> str:
        """Tags of tagged deltas in the order they were applied (audits and tests)."""
        return f"{self.namespace}:{{{policy}}}:log"

    def applied_tags(self, policy: str) -> list[str]:
        return [t.decode() for t in self.r.lrange(self.log_key(policy), 0, -1)]

    # ------------------------------------------------------------------ reads
    def read(self, key: str) -> ArmStats:
        """The policy's statistics, at most ``cache_ms`` old while Redis answers; during an
        outage the last ones read, with this worker's pending deltas folded in."""
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] <= self.cache_s and not self._pending:
            return hit[1].copy()
        self._flush()
        if self._may_try() and not self._pending:
            try:
                stats = self._parse(self.r.hgetall(self.key(key)))
            except OUTAGE as exc:
                self._down(exc)
            else:
                self._up()
                self._cache[key] = (now, stats)
                return stats.copy()
        stats = hit[1].copy() if hit is not None else ArmStats.zeros(self.num_arms)
        for k, delta in self._pending:
            if k == key:
                stats.apply(delta)
        return stats

    def _parse(self, raw: dict[bytes, bytes]) -> ArmStats:
        st = ArmStats.zeros(self.num_arms)
        for f, v in raw.items():
            name = f.decode()
            if name == "t":
                st.t = np.array(float(v))
                continue
            kind, _, arm = name.partition(":")
            if kind in ("n", "s", "p") and arm.isdigit() and int(arm) < self.num_arms:
                {"n": st.n, "s": st.s, "p": st.pulls}[kind][int(arm)] = float(v)
        return st

    # ------------------------------------------------------------------ writes
    def apply(self, key: str, delta: Delta) -> None:
        """Apply a batch's delta atomically in one round trip, or queue it during an outage.

        Blocks (retrying with backoff) while ``max_pending_frames`` frames are queued: the
        worker stops consuming until Redis is back, and never exits for it."""
        if not delta:
            return
        if delta.t and not delta.records:
            raise ValueError("a live delta carries its frames (Delta.add)")
        self._pending.append((key, delta))
        self.pending_frames += delta.t
        self._flush()
        while self.pending_frames > self.max_pending_frames:
            time.sleep(self._backoff)
            self._flush()

    # ------------------------------------------------------------------ the uplink's rate
    #: the shared rate is read at most this often, and expires this long after its last write
    RATE_READ_S = 1.0
    RATE_TTL_S = 300

    def rate_key(self) -> str:
        return f"{self.namespace}:uplink_rate_bps"

    def publish_rate(self, rate_bps: float) -> None:
        """Share the cloud's measured uplink rate with the edge workers (a best-effort SET:
        during an outage the edge keeps the last rate it read)."""
        rate = valid_rate(rate_bps)
        if rate is None or not self._may_try():
            return
        try:
            self.r.set(self.rate_key(), repr(rate), ex=self.RATE_TTL_S)
        except OUTAGE as exc:
            self._down(exc)

    def shared_rate(self) -> float | None:
        """The last measured uplink rate a cloud worker shared, read at most once a second;
        the last one read while Redis is down, None before any (or a value that is not a
        rate)."""
        now = time.monotonic()
        at, rate = self._rate
        if now - at < self.RATE_READ_S or not self._may_try():
            return rate
        try:
            raw = self.r.get(self.rate_key())
        except OUTAGE as exc:
            self._down(exc)
            return rate
        got = None if raw is None else valid_rate(raw)  # expired: back to the configured rate
        self._rate = (now, rate if raw is not None and got is None else got)
        return self._rate[1]

    def flush(self) -> bool:
        """Try to apply the queued deltas now; True when none is left."""
        self._flush()
        return not self._pending

    def _flush(self) -> None:
        while self._pending and self._may_try():
            key, delta = self._pending[0]
            try:
                self.duplicates += int(self._send(key, delta))
            except OUTAGE as exc:
                self._down(exc)
                return
            self._up()
            self._pending.popleft()
            self.pending_frames -= delta.t
            self._cache.pop(key, None)

    def _send(self, key: str, delta: Delta) -> int:
        args: list[object] = [
            self.num_arms,
            repr(float(delta.discount)),
            int(delta.window),
            delta.tag,
            self.dedup_frames,
            len(delta.records),
        ]
        for rec in delta.records:
            obs = ";".join(f"{j},{r!r}" for j, r in rec.observations)
            args += [rec.frame_id, rec.pick, obs]
        args.append(repr(REWARD_BOUND))
        keys = [self.key(key), self.history_key(key), self.log_key(key), self.seen_key(key)]
        return int(self._apply(keys=keys, args=args))

    def stored_arms(self, key: str) -> int | None:
        """The arm count a policy was written with (None: no statistics yet)."""
        raw = self.r.hget(self.key(key), "arms")
        return None if raw is None else int(float(raw))

    def reset(self, key: str) -> None:
        self.r.delete(self.key(key), self.history_key(key), self.log_key(key), self.seen_key(key))
        self._cache.pop(key, None)

    def policies(self) -> list[str]:
        prefix = f"{self.namespace}:{{"
        out = []
        for k in self.r.scan_iter(match=f"{self.namespace}:{{*}}:arms"):
            s = k.decode()
            out.append(s[len(prefix) : s.rindex("}:arms")])
        return sorted(out)

    # ------------------------------------------------------------------ snapshots
    def snapshot(self) -> dict:
        """A versioned JSON-able snapshot of every policy in the namespace."""
        return {
            "format": SNAPSHOT_FORMAT,
            "namespace": self.namespace,
            "arms": self.num_arms,
            "created": time.time(),
            "policies": {k: self.read_fresh(k).to_dict() for k in self.policies()},
            "history": {
                k: [e.decode() for e in self.r.lrange(self.history_key(k), 0, -1)]
                for k in self.policies()
                if self.r.exists(self.history_key(k))
            },
        }

    def read_fresh(self, key: str) -> ArmStats:
        self._cache.pop(key, None)
        return self.read(key)

    def restore(self, snap: dict) -> list[str]:
        """Replace the namespace's policies with a snapshot's (atomically per policy)."""
        if snap.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"snapshot format {snap.get('format')!r} is not {SNAPSHOT_FORMAT!r}")
        if int(snap.get("arms", -1)) != self.num_arms:
            raise ValueError(f"snapshot has {snap.get('arms')} arms, this store {self.num_arms}")
        pipe = self.r.pipeline(transaction=True)
        for k in self.policies():
            pipe.delete(self.key(k), self.history_key(k), self.seen_key(k))
        for name, st in snap["policies"].items():
            mapping: dict[str, str] = {"arms": str(self.num_arms), "t": repr(float(st["t"]))}
            for prefix, field in (("n", "n"), ("s", "s"), ("p", "pulls")):
                vals = st[field]
                if len(vals) != self.num_arms:
                    raise ValueError(f"policy {name}: {field} has {len(vals)} arms")
                mapping.update({f"{prefix}:{i}": repr(float(v)) for i, v in enumerate(vals)})
            pipe.hset(self.key(name), mapping=mapping)
        for name, entries in snap.get("history", {}).items():
            if entries:
                pipe.rpush(self.history_key(name), *entries)
        pipe.execute()
        self._cache.clear()
        return sorted(snap["policies"])


def save_snapshot(store: RedisStore, path: Path) -> dict:
    snap = store.snapshot()
    Path(path).write_text(json.dumps(snap, indent=1) + "\n")
    return snap


def load_snapshot(path: Path) -> dict:
    """A snapshot file's JSON; ValueError for anything that is not one (a file is user input:
    deep nesting raises RecursionError in json, a list has no ``policies``)."""
    try:
        snap = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ValueError(f"cannot read policy snapshot {path}: {str(exc)[:200]}") from None
    if not isinstance(snap, dict) or not isinstance(snap.get("policies"), dict):
        raise ValueError(f"{path} is not a policy snapshot: no 'policies' object")
    return snap
