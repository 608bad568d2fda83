"""Kafka clients (kafka-python) configured once: protocol version, size limits, topics, DLQ.

Every size limit is set from ``kafka.max_message_bytes``, which must equal the broker's
``message.max.bytes`` (deploy/kafka/server.properties.tmpl): the producer's
``max_request_size``, the consumers' ``fetch_max_bytes`` and ``max_partition_fetch_bytes``,
each topic's ``max.message.bytes``, and faust's ``producer_max_request_size`` and
``consumer_max_fetch_size`` (see :mod:`splitee.worker.runtime`).

Every client also gets the connection security of the settings (:func:`security`:
``kafka.security_protocol``, SASL/SCRAM credentials, the CA of the broker's certificate); faust's
equivalent is :func:`faust_credentials`.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import (
    CorruptRecordError,
    NoBrokersAvailable,
    NodeNotReadyError,
    TopicAlreadyExistsError,
)

from splitee.settings import KafkaSettings

if TYPE_CHECKING:  # faust is imported where a worker is built: plain clients stay light
    from faust.types.auth import CredentialsT

_MASK = "**********"


class _MaskPassword(logging.Filter):
    """kafka-python's admin client logs its whole configuration at DEBUG, SASL password
    included (``log.debug("...: %s", configs)``, whose record holds the dict itself as its
    args): mask the password in that record before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, Mapping) and args.get("sasl_plain_password"):
            record.args = {**args, "sasl_plain_password": _MASK}
        return True


logging.getLogger("kafka.admin.client").addFilter(_MaskPassword())


def _password(k: KafkaSettings) -> str:
    """The SASL password in clear, for the client that sends it (KafkaSettings requires one
    with the SASL_* protocols)."""
    return "" if k.sasl_password is None else k.sasl_password.get_secret_value()


def security(k: KafkaSettings) -> dict[str, object]:
    """kafka-python options for ``kafka.security_protocol``: SASL/SCRAM credentials and the CA
    that signed the broker's certificate, as each protocol needs them."""
    cfg: dict[str, object] = {"security_protocol": k.security_protocol}
    if k.security_protocol.startswith("SASL_"):
        cfg["sasl_mechanism"] = k.sasl_mechanism
        cfg["sasl_plain_username"] = k.sasl_username
        cfg["sasl_plain_password"] = _password(k)
    if k.ssl_cafile is not None:  # KafkaSettings allows it with SSL and SASL_SSL only
        cfg["ssl_cafile"] = str(k.ssl_cafile)
    return cfg


def ssl_context(k: KafkaSettings) -> ssl.SSLContext | None:
    """A verifying TLS context for the SSL protocols (hostname checked), None without TLS."""
    if k.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    cafile = None if k.ssl_cafile is None else str(k.ssl_cafile)
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)


def faust_credentials(k: KafkaSettings) -> CredentialsT | None:
    """faust's ``broker_credentials`` for the settings' security protocol (None: PLAINTEXT)."""
    import faust

    ctx = ssl_context(k)
    if k.security_protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=k.sasl_username,
            password=_password(k),
            mechanism=k.sasl_mechanism,
            ssl_context=ctx,
        )
    return None if ctx is None else faust.SSLCredentials(ctx)


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
        **security(k),
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
        **security(k),
    }
    cfg.update(overrides)
    return KafkaConsumer(*topics, **cfg)


def admin(k: KafkaSettings, timeout_s: float = 30.0) -> KafkaAdminClient:
    """An admin client, retrying until the broker answers or ``timeout_s`` passes — also
    while the bootstrap broker answers but the controller it names does not yet (a cluster
    still starting: the client connects to the controller before it returns)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaAdminClient(
                bootstrap_servers=k.bootstrap, api_version=api_version(k), **security(k)
            )
        except NoBrokersAvailable:
            if time.monotonic() > deadline:
                raise NoBrokersAvailable(
                    f"no Kafka broker at kafka.bootstrap={k.bootstrap}: start it with "
                    "deploy/servers-up.sh"
                ) from None
        except NodeNotReadyError:
            if time.monotonic() > deadline:
                raise
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


def topic_configs(k: KafkaSettings, replication: int) -> dict[str, str]:
    """Per-topic settings: the size limit, and with 3 or more replicas ``min.insync.replicas``
    2, so an ``acks=all`` write survives the loss of any one broker and a partition with a
    single replica left refuses writes instead of risking them (the brokers' default too)."""
    cfg = {"max.message.bytes": str(k.max_message_bytes)}
    if replication >= 3:
        cfg["min.insync.replicas"] = "2"
    return cfg


def create_topics(
    k: KafkaSettings, topics: dict[str, int] | None = None, replication: int = 1
) -> list[str]:
    """Create missing topics (idempotent) with ``replication`` replicas each
    (settings.deploy.replication_factor); returns the names created."""
    topics = topics or pipeline_topics(k)
    client = admin(k)
    try:
        existing = set(client.list_topics())
        new = [
            NewTopic(
                name,
                num_partitions=n,
                replication_factor=replication,
                topic_configs=topic_configs(k, replication),
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


def _safe_headers(headers: object) -> list[tuple[str, bytes]]:
    """A record's headers as (str, bytes) pairs, whatever they hold: a dead letter must be
    producible from any record, so keys that are not UTF-8 are kept backslash-escaped and
    anything that is not a (key, bytes) pair is left out."""
    items = headers.items() if isinstance(headers, dict) else headers or []
    out = []
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2):
            continue
        k, v = item
        if isinstance(k, (bytes, bytearray)):
            k = bytes(k).decode("utf-8", "backslashreplace")
        elif isinstance(k, str):
            k = k.encode("utf-8", "backslashreplace").decode("utf-8")
        else:
            continue
        out.append((k, bytes(v) if isinstance(v, (bytes, bytearray, memoryview)) else b""))
    return out


def dlq_headers(
    reason: str, detail: str, topic: str, partition: int, offset: int, headers: object
) -> list[tuple[str, bytes]]:
    """The original headers plus why and where from, for a dead-letter record (never raises)."""
    out = [(k, v) for k, v in _safe_headers(headers) if not k.startswith("dlq_")]
    out += [
        ("dlq_reason", reason.encode("utf-8", "backslashreplace")),
        ("dlq_detail", detail[:500].encode("utf-8", "backslashreplace")),
        ("dlq_source", f"{topic}/{partition}/{offset}".encode()),
        ("dlq_ts", repr(time.time()).encode()),
    ]
    return out


# Upper bounds of Kafka's v2 framing: the record batch header (61 bytes) and one record's
# varints (length, attributes, timestamp and offset deltas, key and value lengths, header
# count); each header adds two length varints.
_BATCH_OVERHEAD = 61 + 40
_HEADER_OVERHEAD = 10
_KEEP_KEY = 1024


def record_size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    """An upper bound of the bytes a single-record batch takes on the wire (uncompressed)."""
    hs = sum(_HEADER_OVERHEAD + len(k.encode()) + len(v) for k, v in headers)
    return _BATCH_OVERHEAD + len(key or b"") + len(value or b"") + hs


def dlq_record(
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: object,
    max_message_bytes: int,
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of the dead letter for a record, within ``max_message_bytes``.

    A record that was just under the size limit (say a 16,777,016-byte frame) no longer fits
    once the dead-letter headers are added, and a producer refuses it, which would stop the
    worker on every retry. So the value is cut to what fits, with header
    ``dlq_truncated=<original length>``. Should the original key and headers alone leave no
    room, the original headers are dropped (``dlq_headers_dropped=<count>``), then the key is
    cut to 1 KiB (``dlq_key_truncated=<original length>``).
    """
    h = dlq_headers(reason, detail, topic, partition, offset, headers)
    value = value or b""
    # room for a dlq_truncated header with up to 20 digits
    reserve = _HEADER_OVERHEAD + len("dlq_truncated") + 20
    if record_size(key, b"", h) + reserve > max_message_bytes:
        kept = [x for x in h if x[0].startswith("dlq_")]
        h = [*kept, ("dlq_headers_dropped", str(len(h) - len(kept)).encode())]
    if key is not None and record_size(key, b"", h) + reserve > max_message_bytes:
        h.append(("dlq_key_truncated", str(len(key)).encode()))
        key = key[:_KEEP_KEY]
    room = max_message_bytes - record_size(key, b"", h) - reserve
    if len(value) > room:
        h.append(("dlq_truncated", str(len(value)).encode()))
        value = value[: max(room, 0)]
    return key, value, h


def poll_skipping_corrupt(
    c: KafkaConsumer,
    timeout_ms: int,
    on_corrupt: Callable[[TopicPartition, int, Exception], None],
) -> dict[TopicPartition, list]:
    """``c.poll(timeout_ms)``, except that a record the client cannot parse is skipped.

    kafka-python raises CorruptRecordError from ``poll`` for a record it cannot parse (a
    header key that is not UTF-8, a failed CRC), leaves the consumer's position on it, and
    would then spin forever in the next ``poll`` of that partition (its record iterator is
    dead but not discarded): a reader that let the error escape crash-loops, one that polled
    again hangs. So after the error every partition is paused and polled once (which discards
    what the failed fetch left), then each is polled alone; the one that raises is sought one
    offset past its position and ``on_corrupt(partition, offset, error)`` is called. The client
    re-parses a whole producer batch from its start, so the records after a corrupt one in the
    same batch are skipped (and reported) one by one too.
    """
    try:
        return c.poll(timeout_ms=timeout_ms)
    except CorruptRecordError:
        pass
    parts = set(c.assignment())
    out: dict[TopicPartition, list] = {}
    try:
        c.pause(*parts)
        c.poll(timeout_ms=100)  # paused: returns nothing, discards buffered fetches
        for tp in sorted(parts):
            c.resume(tp)
            try:
                for p, recs in c.poll(timeout_ms=min(timeout_ms, 200)).items():
                    out.setdefault(p, []).extend(recs)
            except CorruptRecordError as exc:
                off = c.position(tp)
                c.seek(tp, off + 1)
                on_corrupt(tp, off, exc)
            c.pause(tp)
    finally:
        c.resume(*parts)
    return out


def committed_and_end(
    admin_client: KafkaAdminClient,
    consumer_client: KafkaConsumer,
    group: str,
    topics: Iterable[str],
) -> dict[TopicPartition, tuple[int, int]]:
    """(committed, end) offset of every partition of ``topics`` for consumer group ``group``,
    the broker's view of its lag. A partition the group has not committed yet counts from
    the log start: everything in it is lag. Used by the exporter and the stall watchdog."""
    topics = list(topics)
    committed: dict[TopicPartition, int] = {}
    for tp, om in admin_client.list_consumer_group_offsets(group).items():
        if tp.topic in topics and om.offset is not None and om.offset >= 0:
            committed[tp] = om.offset
    tps = [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer_client.partitions_for_topic(topic) or ())
    ]
    if not tps:
        return {}
    ends = consumer_client.end_offsets(tps)
    starts = consumer_client.beginning_offsets([tp for tp in tps if tp not in committed])
    return {tp: (int(committed.get(tp, starts.get(tp, 0))), int(ends[tp])) for tp in tps}


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
