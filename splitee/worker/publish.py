"""Publishing a batch step's records: one Kafka record batch per partition, acknowledged once.

faust's ``Topic.send`` wraps every record in a pending message, a future, sensor calls and a
debug log line before aiokafka appends it to its accumulator one at a time; for a batch of 32
offloads that per-record machinery was the largest Python cost left on the worker's event
loop (docs/perf). Here the records of a batch are grouped by partition and appended to
aiokafka's record-batch builder (C) with ``create_batch`` / ``send_batch``, aiokafka's public
batch API, on the very producer faust started (same connection, limits, ``acks=all`` and
security settings). Each future resolves when the broker has acknowledged its batch; the
caller waits for all of them before it acknowledges the input, so the at-least-once contract
is the same as with per-record sends.

Partitions follow the Java client's default partitioner (murmur2 of the key over all
partitions), as kafka-python's and aiokafka's ``send`` do, so a frame id or camera key lands
on the partition it always did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiokafka.partitioner import DefaultPartitioner

from splitee.worker import kafka_internals
from splitee.worker.records import OutRecord

if TYPE_CHECKING:
    import faust
    from aiokafka import AIOKafkaProducer

_partitioner = DefaultPartitioner()


class BatchPublisher:
    """Sends lists of :class:`OutRecord` through a faust app's own aiokafka producer."""

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self._producer: AIOKafkaProducer | None = None

    async def producer(self) -> AIOKafkaProducer:
        """The aiokafka producer under faust's (started on first use, as faust does)."""
        if self._producer is None:
            started = await self.app.maybe_start_producer()
            self._producer = kafka_internals.aiokafka_producer(started)
        return self._producer

    async def send(self, topic: str, records: Sequence[OutRecord]) -> list[asyncio.Future]:
        """Queue ``records`` on ``topic`` without waiting; the futures of their batches'
        acknowledgements (a batch fills up to the producer's max batch size, then another
        starts; a record larger than that still goes alone, up to the message size limit)."""
        if not records:
            return []
        aio = await self.producer()
        partitions = sorted(await aio.partitions_for(topic))
        by_partition: dict[int, list[OutRecord]] = {}
        for r in records:
            p = _partitioner(r.key, partitions, partitions)
            by_partition.setdefault(p, []).append(r)
        futures: list[asyncio.Future] = []
        for p, recs in by_partition.items():
            batch = aio.create_batch()
            for r in recs:
                if batch.append(key=r.key, value=r.value, timestamp=None, headers=r.headers):
                    continue
                futures.append(await aio.send_batch(batch, topic, partition=p))  # full: send
                batch = aio.create_batch()
                if not batch.append(key=r.key, value=r.value, timestamp=None, headers=r.headers):
                    raise ValueError(f"record of {len(r.value)} bytes fits no batch")
            batch.close()
            futures.append(await aio.send_batch(batch, topic, partition=p))
        return futures
