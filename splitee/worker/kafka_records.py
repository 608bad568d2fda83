"""Consumed record batches that survive a record the Kafka client cannot decode.

aiokafka (under faust) decodes every header key as strict UTF-8 while it unpacks a fetched
batch; one record with a non-UTF-8 header key raises inside the fetcher, the worker crashes,
and after a restart it fetches the same batch and crashes again — a poison record stops a
partition for good. :func:`install` makes the fetcher decode such a batch leniently instead:
the batch is unpacked by aiokafka's fast decoder as before, and only when that raises
``UnicodeDecodeError`` are the remaining records of that one batch decoded by aiokafka's
pure-Python decoder with undecodable header bytes kept as surrogates. The record then reaches
the worker's batch step, whose header validation sends it to the dead-letter topic
(``bad_header``), and every other record of the batch is processed as usual.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from splitee.worker import kafka_internals

_BATCH_HEADER = 12  # base offset (int64) + batch length (int32)


class _LenientSlice(bytearray):
    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return super().decode(encoding, "surrogateescape")


class _LenientBuffer(bytearray):
    """A record buffer whose slices decode undecodable bytes as surrogates."""

    def __getitem__(self, item: Any) -> Any:
        out = super().__getitem__(item)
        return _LenientSlice(out) if isinstance(item, slice) else out


class _FallbackBatch:
    """A fast-path record batch that falls back to lenient decoding for the rest of itself."""

    def __init__(self, batch: Any, raw: bytes) -> None:
        self._batch = batch
        self._raw = raw

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __iter__(self) -> Iterator[Any]:
        last = -1
        try:
            for record in self._batch:
                last = record.offset
                yield record
        except UnicodeDecodeError:
            for record in kafka_internals.lenient_python_batch(self._raw, _LenientBuffer):
                if record.offset > last:
                    yield record


class SafeMemoryRecords:
    """aiokafka's ``MemoryRecords`` whose v2 batches decode leniently when they must."""

    def __init__(self, data: bytes) -> None:
        from aiokafka.record.memory_records import MemoryRecords  # the fast decoder

        self._records = MemoryRecords(data)
        self._data = memoryview(data)
        self._pos = 0

    def size_in_bytes(self) -> int:
        return self._records.size_in_bytes()

    def has_next(self) -> bool:
        return self._records.has_next()

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is None:
            return None
        head = self._data[self._pos : self._pos + _BATCH_HEADER]
        size = _BATCH_HEADER + int.from_bytes(head[8:12], "big", signed=True)
        raw = bytes(self._data[self._pos : self._pos + size])
        self._pos += size
        return _FallbackBatch(batch, raw) if batch.magic == 2 else batch


def install() -> None:
    """Make aiokafka's fetcher unpack batches with :class:`SafeMemoryRecords` (idempotent)."""
    kafka_internals.use_fetch_decoder(SafeMemoryRecords)
