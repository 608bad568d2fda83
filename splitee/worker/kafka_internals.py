"""The private parts of faust and aiokafka the workers rely on, in one place.

Three things the libraries offer no public way to do: take a stream's events without faust's
``take`` (which waits for a full batch or a timeout, where the worker wants what is available
now), reach the aiokafka producer under faust's to send whole record batches
(:mod:`splitee.worker.publish`), and decode a fetched record batch leniently when one header
key is not UTF-8 (:mod:`splitee.worker.kafka_records`). Each use goes through a function here, and
:data:`REQUIRED` names every private attribute they touch, so that an upgrade of either library
that renames one fails ``tests/unit/test_kafka_internals.py`` instead of a live worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # faust is imported where a worker is built: plain clients stay light
    import faust
    from aiokafka import AIOKafkaProducer

#: (importable owner, attribute, what it is): every private name used below. Class attributes
#: are checked on the class; instance attributes (set in ``__init__``) on a built instance.
REQUIRED: tuple[tuple[str, str, str], ...] = (
    ("faust.streams:Stream", "_enable_passive", "method: start the stream's passive consumption"),
    ("faust.streams:Stream", "_processors", "instance: the stream's processor list"),
    ("faust.transport.drivers.aiokafka:Producer", "_ensure_producer", "method: aiokafka producer"),
    ("aiokafka.record.default_records", "_DefaultRecordBatchPy", "pure-Python batch decoder"),
    ("aiokafka.record.default_records:_DefaultRecordBatchPy", "_buffer", "instance: raw bytes"),
    ("aiokafka.consumer.fetcher", "MemoryRecords", "the batch decoder the fetcher uses"),
)


def start_passive(stream: faust.StreamT) -> None:
    """Start consuming ``stream``'s channel into its processors, as faust's own
    ``take_events`` does before it reads events one by one."""
    stream._enable_passive(stream.channel)  # type: ignore[attr-defined]


def remove_processor(stream: faust.StreamT, processor: Callable[..., Any]) -> None:
    """Undo ``stream.add_processor(processor)`` (faust has no public way back)."""
    stream._processors.remove(processor)  # type: ignore[attr-defined]


def aiokafka_producer(faust_producer: Any) -> AIOKafkaProducer:
    """The aiokafka producer a started faust producer sends through."""
    return faust_producer._ensure_producer()


def lenient_python_batch(raw: bytes, wrap: Callable[[Any], Any]) -> Any:
    """aiokafka's pure-Python decoder of one v2 record batch, iterated once (which decompresses
    it) and then reading its records from ``wrap(buffer)`` instead of the buffer itself.

    Returns the record iterator; records are decoded lazily, so every one after the first comes
    from the wrapped buffer.
    """
    from aiokafka.record.default_records import _DefaultRecordBatchPy

    batch = _DefaultRecordBatchPy(raw)
    records = iter(batch)  # decompresses first, if need be
    batch._buffer = wrap(batch._buffer)
    return records


def use_fetch_decoder(decoder: type) -> None:
    """Make aiokafka's fetcher unpack fetched batches with ``decoder`` (a ``MemoryRecords``)."""
    from aiokafka.consumer import fetcher

    fetcher.MemoryRecords = decoder  # type: ignore[misc, assignment]
