"""A fetched batch with a record whose header key is not UTF-8 still yields every record."""

from __future__ import annotations

import pytest
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy as Builder

from splitee.wire import WireError, header_map
from splitee.worker.kafka_records import SafeMemoryRecords


class RawKey(str):
    """A header key the builder writes as bytes that are not UTF-8."""

    def encode(self, *_: object, **__: object) -> bytes:
        return b"k\xff\xfe"


def _batch(base: int, headers_of) -> bytes:
    b = Builder(  # the Python builder writes a key as its own encode() returns it
        magic=2, compression_type=0, is_transactional=0, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    for i in range(5):
        b.append(i, timestamp=1000 + i, key=b"k%d" % i, value=b"v%d" % i, headers=headers_of(i))
    buf = bytearray(b.build())
    buf[0:8] = base.to_bytes(8, "big")
    return bytes(buf)


def test_a_poison_header_key_does_not_take_its_batch_down():
    def headers(i):
        return [(RawKey("x"), b"1")] if i == 2 else [("frame_id", b"f%d" % i)]

    data = _batch(0, headers) + _batch(5, lambda i: [("frame_id", b"g%d" % i)])
    records = SafeMemoryRecords(data)
    got = []
    while records.has_next():
        got += list(records.next_batch())
    assert [r.offset for r in got] == list(range(10))
    assert [r.value for r in got[:5]] == [b"v0", b"v1", b"v2", b"v3", b"v4"]
    poison = got[2]
    with pytest.raises(WireError) as e:  # the worker's validation: a dead letter
        header_map(poison.headers)
    assert e.value.reason == "bad_header"
