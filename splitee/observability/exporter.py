"""The exporter service: Kafka consumer lag and the shared policy state, as Prometheus metrics.

Neither is visible from inside one worker: lag is the broker's view of a whole consumer group
(end offset minus committed offset, per partition), and the bandit statistics live in Redis,
updated by every worker. One small process reads both every scrape interval, so dashboards
show how far each group is behind and what the policy believes about every arm.

Lag (kafka-python): committed offsets from ``list_consumer_group_offsets`` for the groups
``<prefix>-edge``, ``<prefix>-cloud`` and ``<prefix>-evaluator``, end offsets from a
group-less consumer's ``end_offsets``. A partition a group has not committed yet counts from
the log start, i.e. everything in it is lag. Policy state: every policy of the Redis
namespace (:meth:`policy_store.redis_store.RedisStore.policies`), arms 1-based in labels.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from policy_store.policies import ArmStats, Policy
from splitee.settings import KafkaSettings, Settings

log = logging.getLogger("splitee.exporter")
MAX_POLICIES = 64
SOURCES = ("kafka", "redis")


@dataclass(frozen=True)
class Lag:
    group: str
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


def group_topics(k: KafkaSettings) -> dict[str, list[str]]:
    """The consumer groups of a deployment and the topics each one consumes."""
    g = k.group_prefix
    return {
        f"{g}-edge": [k.frames_topic],
        f"{g}-cloud": [k.offload_topic],
        f"{g}-evaluator": [k.results_topic, k.truth_topic],
    }


class LagReader:
    """Committed and end offsets of every group's topics, over long-lived clients."""

    def __init__(self, k: KafkaSettings) -> None:
        from splitee.kafka_io import admin, consumer

        self.k = k
        self.admin = admin(k)
        self.consumer = consumer(k, group_id=None)

    def read(self) -> tuple[list[Lag], dict[str, tuple[str, int]]]:
        """Lag rows, and group -> (state, members)."""
        from splitee.kafka_io import committed_and_end

        rows: list[Lag] = []
        wanted = group_topics(self.k)
        for group, topics in wanted.items():
            offsets = committed_and_end(self.admin, self.consumer, group, topics)
            for tp, (done, end) in offsets.items():
                rows.append(Lag(group, tp.topic, tp.partition, done, end))
        members = {
            g.group: (g.state, len(g.members))
            for g in self.admin.describe_consumer_groups(list(wanted))
        }
        return rows, members

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


@dataclass
class ExporterState:
    """The last successful reading of each source, and how reading them went."""

    lag: list[Lag] = field(default_factory=list)
    members: dict[str, tuple[str, int]] = field(default_factory=dict)
    policies: dict[str, ArmStats] = field(default_factory=dict)
    up: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(SOURCES, False))
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SOURCES, 0))
    refreshed: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, source: str, ok: bool) -> None:
        with self.lock:
            self.up[source] = ok
            if ok:
                self.refreshed[source] = time.time()
            else:
                self.errors[source] += 1


class ExporterCollector(Collector):
    """Prometheus view of an :class:`ExporterState` (``policy`` gives the UCB index)."""

    def __init__(self, state: ExporterState, policy: Policy | None = None) -> None:
        self.state = state
        self.policy = policy

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        st = self.state
        with st.lock:
            yield from self._lag(st)
            yield from self._policies(st)
            up = GaugeMetricFamily(
                "splitee_exporter_up", "1 if the last read of a source worked", labels=["source"]
            )
            err = CounterMetricFamily(
                "splitee_exporter_errors", "Failed reads of a source", labels=["source"]
            )
            ts = GaugeMetricFamily(
                "splitee_exporter_last_refresh_timestamp_seconds",
                "When a source was last read successfully",
                labels=["source"],
            )
            for src in SOURCES:
                up.add_metric([src], float(st.up[src]))
                err.add_metric([src], st.errors[src])
                if src in st.refreshed:
                    ts.add_metric([src], st.refreshed[src])
            yield from (up, err, ts)

    @staticmethod
    def _lag(st: ExporterState) -> Iterator[GaugeMetricFamily]:
        labels = ["group", "topic", "partition"]
        lag = GaugeMetricFamily(
            "splitee_kafka_consumer_lag_messages",
            "Records a consumer group has not committed yet (end - committed offset)",
            labels=labels,
        )
        committed = GaugeMetricFamily(
            "splitee_kafka_consumer_committed_offset", "Committed offset", labels=labels
        )
        end = GaugeMetricFamily(
            "splitee_kafka_topic_end_offset",
            "End offset (next offset to be written)",
            labels=["topic", "partition"],
        )
        ends_seen = set()
        for r in st.lag:
            lv = [r.group, r.topic, str(r.partition)]
            lag.add_metric(lv, r.lag)
            committed.add_metric(lv, r.committed)
            if (r.topic, r.partition) not in ends_seen:
                ends_seen.add((r.topic, r.partition))
                end.add_metric([r.topic, str(r.partition)], r.end)
        members = GaugeMetricFamily(
            "splitee_kafka_group_members", "Members of a consumer group", labels=["group", "state"]
        )
        for g, (state, n) in sorted(st.members.items()):
            members.add_metric([g, state or "unknown"], n)
        yield from (lag, committed, end, members)

    def _policies(self, st: ExporterState) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        pa = ["policy", "arm"]
        pulls = CounterMetricFamily(
            "splitee_policy_pulls", "Decisions for each arm (Redis policy statistics)", labels=pa
        )
        obs = CounterMetricFamily(
            "splitee_policy_observations",
            "Rewards folded into each arm, side observations included",
            labels=pa,
        )
        mean = GaugeMetricFamily(
            "splitee_policy_mean_reward", "Mean observed reward of each arm", labels=pa
        )
        ucb = GaugeMetricFamily(
            "splitee_policy_ucb_index",
            "UCB index of each observed arm (what the next choice maximises)",
            labels=pa,
        )
        frames = CounterMetricFamily(
            "splitee_policy_frames", "Frames the policy decided for (t)", labels=["policy"]
        )
        best = GaugeMetricFamily(
            "splitee_policy_best_arm", "Arm with the best mean reward (1-based)", labels=["policy"]
        )
        for name, stats in sorted(st.policies.items()):
            means = stats.means()
            index = self._index(stats)
            for a in range(stats.num_arms):
                lv = [name, str(a + 1)]
                pulls.add_metric(lv, float(stats.pulls[a]))
                obs.add_metric(lv, float(stats.n[a]))
                if stats.n[a] > 0:
                    mean.add_metric(lv, float(means[a]))
                    if index is not None:
                        ucb.add_metric(lv, float(index[a]))
            frames.add_metric([name], float(stats.t))
            if np.any(stats.n > 0):
                masked = np.where(stats.n > 0, means, -np.inf)
                best.add_metric([name], float(np.argmax(masked) + 1))
        yield from (pulls, obs, mean, ucb, frames, best)

    def _index(self, stats: ArmStats) -> np.ndarray | None:
        if self.policy is None:
            return None
        try:
            return np.asarray(self.policy.index(stats), dtype=np.float64)
        except (NotImplementedError, AttributeError, TypeError, ValueError):
            return None  # a fixed arm has no index; a windowed one may need state Redis lacks


def refresh(state: ExporterState, lag: LagReader | None, store) -> None:
    """One reading of both sources; a failing source keeps its last values and is marked down."""
    if lag is not None:
        try:
            rows, members = lag.read()
            with state.lock:
                state.lag, state.members = rows, members
            state.record("kafka", True)
        except Exception:
            log.exception("reading consumer lag failed")
            state.record("kafka", False)
    try:
        names = store.policies()[:MAX_POLICIES]
        pols = {n: store.read_fresh(n) for n in names}
        with state.lock:
            state.policies = pols
        state.record("redis", True)
    except Exception:
        log.exception("reading the policy store failed")
        state.record("redis", False)


def run(s: Settings, worker_id: str, metrics_port: int) -> None:
    """Refresh lag and policy state every scrape interval until SIGTERM."""
    from splitee import policy_setup
    from splitee.observability import service
    from splitee.observability.promapi import parse_duration

    store = policy_setup.store(s, policy_setup.split_arms(s), cache_ms=0.0)
    state = ExporterState()
    # the same policy the workers run, so the index is the one they maximise
    policy = policy_setup.policy(s)
    stop = service.start(
        s.var_dir,
        "exporter",
        worker_id,
        metrics_port,
        ExporterCollector(state, policy),
        host=s.deploy.metrics_host,
    )
    lag: LagReader | None = None
    interval = parse_duration(s.observability.scrape_interval)

    def step() -> None:
        nonlocal lag
        if lag is None:
            try:
                lag = LagReader(s.kafka)
            except Exception:
                log.exception("cannot connect to Kafka at %s", s.kafka.bootstrap)
                state.record("kafka", False)
        refresh(state, lag, store)

    try:
        service.run_loop(step, interval, stop)
    finally:
        if lag is not None:
            lag.close()
