"""Kafka clients (kafka-python) configured once: protocol version, size limits, topics, DLQ.

Every size limit is set from ``kafka.max_message_bytes``, which must equal the broker's
``message.max.bytes`` (deploy/kafka/server.properties.tmpl): the producer's
``max_request_size``, the consumers' ``fetch_max_bytes`` and ``max_partition_fetch_bytes``,
each topic's ``max.message.bytes``, and faust's ``producer_max_request_size`` and
``consumer_max_fetch_size`` (see :mod:`splitee.faust_app`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import NoBrokersAvailable, TopicAlreadyExistsError

from splitee.settings import KafkaSettings


def api_version(k: KafkaSettings) -> tuple[int, ...]:
    return tuple(int(p) for p in k.api_version.split("."))


def producer(k: KafkaSettings, **overrides: object) -> KafkaProducer:
    """Idempotent, acks=all producer (no duplicates from retries, nothing lost on failover)."""
    cfg: dict[str, object] = {
        "bootstrap_servers": k.bootstrap,
        "api_version": api_version(k),
        "acks": "all",
        "enable_idempotence": True,
        "max_request_size": k.max_message_bytes,
        "linger_ms": 5,
        "retries": 10,
    }
    cfg.update(overrides)
    return KafkaProducer(**cfg)


def consumer(k: KafkaSettings, *topics: str, **overrides: object) -> KafkaConsumer:
    cfg: dict[str, object] = {
        "bootstrap_servers": k.bootstrap,
        "api_version": api_version(k),
        "fetch_max_bytes": k.max_message_bytes,
        "max_partition_fetch_bytes": k.max_message_bytes,
        # one fetch response may carry a full fetch_max_bytes plus protocol overhead
        "receive_message_max_bytes": k.max_message_bytes + (1 << 20),
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
    }
    cfg.update(overrides)
    return KafkaConsumer(*topics, **cfg)


def admin(k: KafkaSettings, timeout_s: float = 30.0) -> KafkaAdminClient:
    """An admin client, retrying until the broker answers or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaAdminClient(bootstrap_servers=k.bootstrap, api_version=api_version(k))
        except NoBrokersAvailable:
            if time.monotonic() > deadline:
                raise NoBrokersAvailable(
                    f"no Kafka broker at kafka.bootstrap={k.bootstrap}: start it with "
                    "deploy/servers-up.sh"
                ) from None
            time.sleep(0.5)


def dlq(topic: str, k: KafkaSettings) -> str:
    return topic + k.dlq_suffix


def pipeline_topics(k: KafkaSettings) -> dict[str, int]:
    """Every topic the pipeline uses, with its partition count."""
    p = k.partitions
    topics = {
        k.frames_topic: p,
        k.truth_topic: p,
        k.offload_topic: p,
        k.results_topic: p,
    }
    for t in (k.frames_topic, k.offload_topic):
        topics[dlq(t, k)] = 1
    return topics


def create_topics(k: KafkaSettings, topics: dict[str, int] | None = None) -> list[str]:
    """Create missing topics (idempotent); returns the names created."""
    topics = topics or pipeline_topics(k)
    client = admin(k)
    try:
        existing = set(client.list_topics())
        new = [
            NewTopic(
                name,
                num_partitions=n,
                replication_factor=1,
                topic_configs={"max.message.bytes": str(k.max_message_bytes)},
            )
            for name, n in topics.items()
            if name not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                client.create_topics(new)
        return [t.name for t in new]
    finally:
        client.close()


def delete_topics(k: KafkaSettings, names: Iterable[str]) -> None:
    client = admin(k)
    try:
        present = set(client.list_topics())
        todo = [n for n in names if n in present]
        if todo:
            client.delete_topics(todo)
    finally:
        client.close()


def dlq_headers(
    reason: str, detail: str, topic: str, partition: int, offset: int, headers: object
) -> list[tuple[str, bytes]]:
    """The original headers plus why and where from, for a dead-letter record."""
    from splitee.wire import header_map

    out = [(k, v) for k, v in header_map(headers).items() if not k.startswith("dlq_")]
    out += [
        ("dlq_reason", reason.encode()),
        ("dlq_detail", detail[:500].encode()),
        ("dlq_source", f"{topic}/{partition}/{offset}".encode()),
        ("dlq_ts", repr(time.time()).encode()),
    ]
    return out


def group_members(k: KafkaSettings, groups: list[str]) -> dict[str, tuple[str, int, int]]:
    """group -> (state, members, assigned partitions) as the broker's coordinator sees it."""
    client = admin(k)
    try:
        out = {}
        for g in client.describe_consumer_groups(groups):
            assigned = 0
            for mem in g.members:
                a = mem.member_assignment
                if a is not None and hasattr(a, "assignment"):
                    assigned += sum(len(parts) for _, parts in a.assignment)
            out[g.group] = (g.state, len(g.members), assigned)
        return out
    finally:
        client.close()


def wait_groups(k: KafkaSettings, want: dict[str, int], timeout_s: float) -> None:
    """Block until each group is Stable with at least ``want[group]`` members."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, tuple[str, int, int]] = {}
    while time.monotonic() < deadline:
        try:
            last = group_members(k, list(want))
        except Exception:  # the coordinator may not exist yet
            last = {}
        if all(last.get(g, ("", 0, 0))[0] == "Stable" and last[g][1] >= n for g, n in want.items()):
            return
        time.sleep(1.0)
    raise TimeoutError(f"consumer groups not ready after {timeout_s:.0f}s: {last}")
