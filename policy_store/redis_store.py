"""Bandit statistics shared by every worker through Redis.

Layout: one hash per policy at ``<namespace>:{<policy>}:arms`` (the ``{…}`` hash tag keeps a
policy on one Redis Cluster slot) with fields ``n:<arm>`` (observations), ``s:<arm>`` (reward
sum), ``p:<arm>`` (decisions), ``t`` (frames) and ``arms`` (arm count). A worker applies a whole
batch of frames as one :class:`~policy_store.store.Delta` with one ``EVALSHA`` of a Lua script,
so the increments of a batch land atomically and concurrent workers lose no update. Reads are
cached for ``cache_ms`` milliseconds: a worker choosing arms for a batch sees statistics at
most that old, and always sees its own writes (the cache is dropped on apply).

Delivery: updates are at-least-once, like the frames they come from. A worker killed after
applying a batch's delta but before committing its Kafka offsets replays that batch, and
the delta is applied again: at most one batch (``edge.batch_size`` frames) per crash is counted
twice, which shifts each arm's mean by at most ``batch_size / N_k`` of a reward range.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import redis

from policy_store.policies import ArmStats
from policy_store.store import Delta

SNAPSHOT_FORMAT = "splitee-policy-snapshot/1"

# KEYS[1] = statistics hash, KEYS[2] = window history list, KEYS[3] = applied-tags log.
# ARGV = arms, t, decay, window, tag, pair count, (field, increment) pairs, then window entries
# "arm,reward;arm,reward" (one per frame). Decay multiplies n and s before adding; entries past
# the window are popped and subtracted. Numbers travel as strings with 17 significant digits.
_APPLY = """
local key, hist = KEYS[1], KEYS[2]
local arms = tonumber(ARGV[1])
local cur = redis.call('HGET', key, 'arms')
if cur and tonumber(cur) ~= arms then
  return redis.error_reply('policy has ' .. cur .. ' arms, update has ' .. ARGV[1])
end
redis.call('HSET', key, 'arms', ARGV[1])
local decay = tonumber(ARGV[3])
if decay ~= 1 then
  for a = 0, arms - 1 do
    for _, p in ipairs({'n:', 's:'}) do
      local v = redis.call('HGET', key, p .. a)
      if v then redis.call('HSET', key, p .. a, string.format('%.17g', tonumber(v) * decay)) end
    end
  end
end
redis.call('HINCRBYFLOAT', key, 't', ARGV[2])
local window = tonumber(ARGV[4])
if ARGV[5] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[5])
  redis.call('LTRIM', KEYS[3], -10000, -1)
end
local i = 7
for _ = 1, tonumber(ARGV[6]) do
  redis.call('HINCRBYFLOAT', key, ARGV[i], ARGV[i + 1])
  i = i + 2
end
if window > 0 then
  for j = i, #ARGV do redis.call('RPUSH', hist, ARGV[j]) end
  local excess = redis.call('LLEN', hist) - window
  while excess > 0 do
    local old = redis.call('LPOP', hist)
    for a, r in string.gmatch(old, '(%d+),([^;]+)') do
      redis.call('HINCRBYFLOAT', key, 'n:' .. a, '-1')
      local neg = (string.sub(r, 1, 1) == '-') and string.sub(r, 2) or ('-' .. r)
      redis.call('HINCRBYFLOAT', key, 's:' .. a, neg)
    end
    excess = excess - 1
  end
end
return 1
"""


class RedisStore:
    """A :class:`~policy_store.store.PolicyStore` on Redis."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        namespace: str = "splitee",
        num_arms: int = 9,
        cache_ms: float = 5.0,
        client: redis.Redis | None = None,
    ) -> None:
        self.r = client or redis.Redis.from_url(url)
        self.namespace = namespace
        self.num_arms = num_arms
        self.cache_s = cache_ms / 1000.0
        self._apply = self.r.register_script(_APPLY)
        self._cache: dict[str, tuple[float, ArmStats]] = {}

    def key(self, policy: str) -> str:
        return f"{self.namespace}:{{{policy}}}:arms"

    def history_key(self, policy: str) -> str:
        return f"{self.namespace}:{{{policy}}}:window"

    def log_key(self, policy: str) -> str:
        """Tags of tagged deltas in the order they were applied (audits and tests)."""
        return f"{self.namespace}:{{{policy}}}:log"

    def applied_tags(self, policy: str) -> list[str]:
        return [t.decode() for t in self.r.lrange(self.log_key(policy), 0, -1)]

    # ------------------------------------------------------------------ reads
    def read(self, key: str) -> ArmStats:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] <= self.cache_s:
            return hit[1].copy()
        stats = self._parse(self.r.hgetall(self.key(key)))
        self._cache[key] = (now, stats)
        return stats.copy()

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
        """Apply a batch's delta atomically, in one round trip (decay and window included)."""
        decay = delta.discount**delta.t if delta.discount != 1.0 else 1.0
        pairs: list[object] = []
        for prefix, arr in (("n", delta.n), ("s", delta.s), ("p", delta.pulls)):
            for arm in np.flatnonzero(arr):
                pairs += [f"{prefix}:{arm}", repr(float(arr[arm]))]
        entries = (
            [";".join(f"{j},{float(r)!r}" for j, r in obs) for obs in delta.frames]
            if delta.window
            else []
        )
        args = [
            self.num_arms,
            int(delta.t),
            repr(decay),
            int(delta.window),
            delta.tag,
            len(pairs) // 2,
        ]
        keys = [self.key(key), self.history_key(key), self.log_key(key)]
        self._apply(keys=keys, args=[*args, *pairs, *entries])
        self._cache.pop(key, None)

    def reset(self, key: str) -> None:
        self.r.delete(self.key(key), self.history_key(key), self.log_key(key))
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
            pipe.delete(self.key(k), self.history_key(k))
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
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read policy snapshot {path}: {exc}") from exc
