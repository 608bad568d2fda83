"""Prometheus metrics of every role, named after Prometheus conventions.

A process is one worker; ``role`` and ``worker`` reach Prometheus as target labels from file
service discovery (see :func:`register_target`), so the series here carry only the labels that
vary inside a process: camera, arm, policy, reason, stage. No label takes unbounded values.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import re
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Protocol

from prometheus_client import Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

FRAMES_IN = Counter("splitee_frames_in_total", "Records consumed", ["role"])
FRAMES_OUT = Counter(
    "splitee_frames_out_total", "Results produced, by where the frame finished", ["role", "where"]
)
EXITS = Counter("splitee_exits_total", "Frames that exited at the edge, by arm", ["arm"])
OFFLOADS = Counter("splitee_offloads_total", "Frames offloaded to the cloud, by arm", ["arm"])
ARM_CHOSEN = Counter(
    "splitee_arm_chosen_total", "Split arm chosen per frame", ["camera", "arm", "policy"]
)
CURRENT_ARM = Gauge("splitee_current_arm", "Last split arm chosen for a camera", ["camera"])
REWARD = Histogram(
    "splitee_reward",
    "Rewards applied to the policy, per arm (side observations included)",
    ["arm"],
    buckets=(-3, -2, -1.5, -1, -0.75, -0.5, -0.25, 0, 0.25, 0.5, 0.75, 1),
)
COST = Counter("splitee_cost_total", "Sum of per-frame costs (λ_k + o if offloaded)", ["role"])
OFFLOAD_BYTES = Counter("splitee_offload_bytes_total", "Encoded offload bytes", ["codec"])
UPLINK_BYTES = Counter(
    "splitee_uplink_bytes_total",
    "Bytes the edge puts on its uplink per offload record (payload and headers), by arm and codec",
    ["arm", "codec"],
)
UPLINK_RATE = Gauge(
    "splitee_uplink_rate_bits_per_second",
    "The edge uplink's rate: configured (policy.uplink_mbps) or measured (the cloud's "
    "estimate with policy.uplink_rate = measured)",
    ["source"],
)
STAGE = Histogram(
    "splitee_stage_seconds", "Time per batch in each stage", ["stage"], buckets=LATENCY_BUCKETS
)
END_TO_END = Histogram(
    "splitee_end_to_end_seconds",
    "Capture to result, per frame",
    ["where"],
    buckets=LATENCY_BUCKETS,
)
LATENCY_STAGE = Histogram(
    "splitee_latency_stage_seconds",
    "Capture-to-result latency split by stage, per frame: queue (capture → consumed at the "
    "edge), edge (consumed → result or offload sent), offload_hop (offload sent → consumed by "
    "the cloud), cloud (consumed → result), result_hop (result → read by the evaluator)",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
BATCH = Histogram(
    "splitee_batch_size", "Records per processed batch", ["role"], buckets=BATCH_BUCKETS
)
TD_DECISIONS = Counter(
    "splitee_td_decisions_total",
    "Channel-aware transmission decisions at the edge, by camera and SNR band",
    ["camera", "snr_band", "decision"],
)
DEAD_LETTERS = Counter("splitee_dead_letters_total", "Records sent to a DLQ", ["role", "reason"])
FRAMES_SENT = Counter(
    "splitee_frames_sent_total",
    "Frames a camera sent to Kafka, by the distortion phase in force",
    ["camera", "distortion"],
)

POLICY_STATS_AGE = Gauge(
    "splitee_policy_stats_age_seconds",
    "Age of the policy statistics in use: 0 while Redis answers, growing during an outage",
)
POLICY_PENDING_FRAMES = Gauge(
    "splitee_policy_pending_frames", "Frames whose policy updates wait for Redis"
)
REDIS_UP = Gauge("splitee_redis_up", "1 while the policy store's Redis answers, else 0")
POLICY_DUPLICATES = Gauge(
    "splitee_policy_duplicate_frames", "Frames whose reward the store skipped as already applied"
)


class StoreHealth(Protocol):
    """What a policy store tells about an outage (:class:`policy_store.redis_store.RedisStore`)."""

    up: bool
    pending_frames: int
    duplicates: int

    @property
    def stats_age_s(self) -> float: ...


def watch_store(store: StoreHealth) -> None:
    """Export a policy store's outage state (read at scrape time)."""
    POLICY_STATS_AGE.set_function(lambda: store.stats_age_s)
    POLICY_PENDING_FRAMES.set_function(lambda: store.pending_frames)
    REDIS_UP.set_function(lambda: float(store.up))
    POLICY_DUPLICATES.set_function(lambda: store.duplicates)


class BatchTally:
    """A batch's counts and observations, added to Prometheus once per batch.

    Looking up a labelled child costs a dict lookup and a lock per call; a worker adds a batch's
    frames here (plain Python counters) and :meth:`flush` touches each child once.
    """

    def __init__(self) -> None:
        self._inc: dict[tuple[Counter, tuple[str, ...]], float] = {}
        self._obs: dict[tuple[Histogram, tuple[str, ...]], list[float]] = {}

    def inc(self, metric: Counter, labels: tuple[str, ...], amount: float = 1.0) -> None:
        key = (metric, labels)
        self._inc[key] = self._inc.get(key, 0.0) + amount

    def observe(self, metric: Histogram, labels: tuple[str, ...], value: float) -> None:
        self._obs.setdefault((metric, labels), []).append(value)

    def flush(self) -> None:
        for (metric, labels), amount in self._inc.items():
            metric.labels(*labels).inc(amount)
        for (metric, labels), values in self._obs.items():
            child = metric.labels(*labels)
            for v in values:
                child.observe(v)
        self._inc.clear()
        self._obs.clear()


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Expose /metrics on host:port (0 = disabled); host is settings.deploy.metrics_host."""
    if port:
        start_http_server(port, addr=host)


def target_address(host: str, port: int) -> str:
    """Where Prometheus finds a process serving on ``host``: a wildcard bind is reached on
    loopback, a specific address (a network namespace's, deploy/hosts.sh) on itself."""
    return f"{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"


def targets_dir(var_dir: Path) -> Path:
    """Where Prometheus' file_sd finds targets under the runtime state dir (settings.var_dir)."""
    return var_dir / "prometheus" / "targets"


def register_target(
    var_dir: Path, role: str, worker: str, port: int, host: str = "127.0.0.1"
) -> Path | None:
    """Write a file_sd target so Prometheus scrapes this process (removed on clean exit)."""
    if not port:
        return None
    d = targets_dir(var_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{worker}.json"
    address = target_address(host, port)
    entry = [{"targets": [address], "labels": {"role": role, "worker": worker}}]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry))
    tmp.replace(path)
    atexit.register(unregister_target, path, address)
    return path


def unregister_target(path: Path, address: str) -> None:
    """Remove this process's file_sd target, unless another process has taken the name since."""
    with contextlib.suppress(OSError, ValueError):
        if address in json.loads(path.read_text())[0]["targets"]:
            path.unlink()


_UNSAFE_LABEL_CHARS = re.compile(r"[^A-Za-z0-9_.:/+-]")
MAX_LABEL_CHARS = 64
OTHER_LABEL = "other"
_label_values: dict[str, set[str]] = {}
_label_lock = threading.Lock()


def bounded_label(
    value: object, allowed_or_limit: Collection[str] | int = 64, name: str = "camera"
) -> str:
    """A label value that cannot blow up the number of series, from a value a record carries.

    Record headers (camera ids, policy keys derived from them) take any value a producer
    likes, and every distinct label value is a new series held forever by this process and
    Prometheus. So the value is first made safe (characters outside ``[A-Za-z0-9_.:/+-]``
    become ``_``, at most MAX_LABEL_CHARS characters), then bounded: with a collection of
    allowed values, any other becomes ``"other"``; with an int N, the first N distinct values
    of the label ``name`` seen by this process pass and later ones become ``"other"``.

    >>> bounded_label("cam 1\\n", {"cam_1_"})
    'cam_1_'
    >>> bounded_label("cam-9", {"cam-1"})
    'other'
    """
    text = _UNSAFE_LABEL_CHARS.sub("_", str(value)[:MAX_LABEL_CHARS])
    if not isinstance(allowed_or_limit, int):
        return text if text in allowed_or_limit else OTHER_LABEL
    with _label_lock:
        seen = _label_values.setdefault(name, set())
        if text in seen:
            return text
        if len(seen) >= allowed_or_limit:
            return OTHER_LABEL
        seen.add(text)
        return text
