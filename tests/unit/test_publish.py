"""The batch publisher puts every key on the partition the Kafka clients' default partitioner
does (murmur2 over all partitions), so switching from per-record sends moves no key."""

from __future__ import annotations

from kafka.partitioner.default import DefaultPartitioner as KafkaPythonPartitioner

from splitee.worker.publish import _partitioner


def test_keys_land_where_kafka_python_puts_them():
    parts = list(range(8))
    keys = [f"cam-{c}:{i}".encode() for c in range(3) for i in range(200)] + [b"", b"\xff" * 40]
    ours = [_partitioner(k, parts, parts) for k in keys]
    assert ours == [KafkaPythonPartitioner()(k, parts, parts) for k in keys]
    assert len(set(ours)) == len(parts)  # and they spread over every partition
