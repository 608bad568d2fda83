"""The stall watchdog against a real broker: a group with lag whose committed offsets do not
move, beside a worker that takes no batch, makes the worker exit for its supervisor; a worker
holding a batch, or a group that moves, does not."""

from __future__ import annotations

import threading
import time
import uuid

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from splitee.kafka_io import consumer, create_topics, producer
from splitee.settings import Settings
from splitee.worker.stall import STALL_EXIT, GroupOffsets, Progress, start_watchdog


def topic_with_lag(k, group: str, topic: str) -> None:
    """10 records on partition 0 of a new topic, of which ``group`` committed 3."""
    create_topics(k, {topic: 1}, replication=1)
    prod = producer(k)
    for i in range(10):
        prod.send(topic, key=b"k", value=str(i).encode(), partition=0)
    prod.flush()
    prod.close()
    c = consumer(k, group_id=group)
    c.assign([TopicPartition(topic, 0)])
    c.commit({TopicPartition(topic, 0): OffsetAndMetadata(3, "", -1)})
    c.close()


STOP = threading.Event()  # ends every watchdog these tests start


def teardown_module() -> None:
    STOP.set()


def watch(k, group, topic, progress) -> tuple[threading.Event, list[int]]:
    exited = threading.Event()
    codes: list[int] = []

    def exit_(code: int) -> None:
        codes.append(code)
        exited.set()

    start_watchdog(k, group, topic, progress, stall_s=2.0, check_s=0.5, exit_=exit_, stop=STOP)
    return exited, codes


def test_a_stuck_group_stops_an_idle_worker_only(servers):
    k = Settings().kafka
    tag = uuid.uuid4().hex[:8]
    group, topic = f"stall-{tag}", f"stall-{tag}"
    topic_with_lag(k, group, topic)
    offsets = GroupOffsets(k, group, topic)
    assert offsets.read() == ({0: 3}, {0: 10})
    offsets.close()

    idle = Progress()
    exited, codes = watch(k, group, topic, idle)
    assert exited.wait(30), "the watchdog never fired on a stuck group"
    assert codes == [STALL_EXIT]

    busy = Progress()
    busy.took()  # a batch held (e.g. blocked on a full Redis buffer): busy, not stalled
    exited, codes = watch(k, group, topic, busy)
    assert not exited.wait(6), codes


def test_a_group_that_moves_is_not_stuck(servers):
    k = Settings().kafka
    tag = uuid.uuid4().hex[:8]
    group, topic = f"moving-{tag}", f"moving-{tag}"
    topic_with_lag(k, group, topic)
    exited, codes = watch(k, group, topic, Progress())
    c = consumer(k, group_id=group)
    c.assign([TopicPartition(topic, 0)])
    for offset in range(4, 11):  # one record a second, as a slow worker would
        c.commit({TopicPartition(topic, 0): OffsetAndMetadata(offset, "", -1)})
        assert not exited.is_set(), codes
        time.sleep(1.0)
    c.close()
    assert not exited.wait(1.0), codes
