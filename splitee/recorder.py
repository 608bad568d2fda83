"""The Kafka recorder: consumes topics into a recording (:mod:`splitee.recording`).

It reads every partition without a consumer group, holds each truth record back until its frame
is recorded (so a recording cut at N frames holds exactly their labels), and keeps a snapshot of
the Redis policy at start and end. Kept apart from the format so that reading a recording needs
neither Kafka nor Redis.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from splitee.recording import (
    ROLES,
    Manifest,
    Record,
    RecordingError,
    RecordingWarning,
    RecordingWriter,
)
from splitee.settings import KafkaSettings, Settings

if TYPE_CHECKING:
    from policy_store.redis_store import RedisStore


def resolve_topics(names: list[str], k: KafkaSettings) -> list[tuple[str | None, str]]:
    """``frames,truth`` → [(role, topic name)]: a role maps through the settings, else a name."""
    out: list[tuple[str | None, str]] = []
    for n in names:
        n = n.strip()
        if not n:
            continue
        role = n if n in ROLES else None
        out.append((role, getattr(k, f"{n}_topic") if role else n))
    if not out:
        raise RecordingError("no topics to record")
    if len({t for _, t in out}) != len(out):
        raise RecordingError(f"a topic is named twice: {names}")
    return out


def num_arms(s: Settings) -> int:
    """Split arms of the configured model: from the checkpoint, else from the settings."""
    path = Path(s.model.checkpoint)
    if path.is_file():
        from splitee import policy_setup  # the send-frame arm counts too

        return policy_setup.split_arms(s)
    blocks = 3 * ((int(s.model.arch.removeprefix("resnet")) - 2) // 6)
    return len(range(s.model.exit_every, blocks, s.model.exit_every)) + 1


def snapshot_store(s: Settings) -> RedisStore:
    """The Redis policy store whose snapshots a recording keeps and a replay restores.

    Fresh reads (no cache): a snapshot must be the store's state now, not a worker's view.
    """
    from splitee import policy_setup

    return policy_setup.store(s, num_arms(s), cache_ms=0.0)


def _try_snapshot(s: Settings) -> tuple[dict | None, str | None]:
    """The policy snapshot, or why there is none: a recording of Kafka must not need Redis."""
    try:
        return snapshot_store(s).snapshot(), None
    except Exception as exc:  # redis down, wrong URL …: record anyway, say so in the manifest
        warnings.warn(f"no policy snapshot: {exc}", RecordingWarning, stacklevel=2)
        return None, f"{type(exc).__name__}: {exc}"


@dataclass
class _StopRule:
    """When to stop: ``count`` records on the first topic, ``duration_s``, or ``stop()``."""

    count: int | None
    duration_s: float | None
    stop: Callable[[], bool] | None
    started: float = field(default_factory=time.monotonic)

    def reason(self, primary: int) -> str | None:
        if self.count is not None and primary >= self.count:
            return "count"
        if self.duration_s is not None and time.monotonic() - self.started >= self.duration_s:
            return "duration"
        if self.stop is not None and self.stop():
            return "stopped"
        return None


def record(
    s: Settings,
    out: Path,
    topics: list[str],
    duration_s: float | None = None,
    count: int | None = None,
    from_beginning: bool = False,
    progress: bool = True,
    stop: Callable[[], bool] | None = None,
    on_ready: Callable[[], None] | None = None,
    drain_s: float = 5.0,
    batch_rows: int = 500,
    flush_s: float = 1.0,
) -> Manifest:
    """Record Kafka topics into ``out`` until ``count`` records of the first topic, ``duration_s``
    seconds, ``stop()`` or Ctrl-C.

    Reads every partition without a consumer group (the pipeline's offsets are untouched), from
    the current end (or the beginning). After stopping, the other topics are read up to their
    end offsets, and when ``frames`` and ``truth`` are both recorded, until every recorded frame
    has its truth record (at most ``drain_s``): see :class:`_TruthJoin`.
    """
    from kafka import TopicPartition
    from tqdm import tqdm

    from splitee.kafka_io import consumer, poll_skipping_corrupt

    k = s.kafka
    spec = resolve_topics(topics, k)
    if count is not None and count <= 0:
        raise RecordingError("--count must be positive")
    snap, err = _try_snapshot(s)
    writer = RecordingWriter(
        out, spec, s.model_dump(mode="json"), snap, batch_rows, flush_s, policy_error=err
    )
    # A fetch response may be as large as fetch_max_bytes: let the connection accept it.
    c = consumer(k, group_id=None)
    try:
        tps = []
        for _, t in spec:
            tps += [TopicPartition(t, p) for p in sorted(_partitions(c, t))]
        c.assign(tps)
        (c.seek_to_beginning if from_beginning else c.seek_to_end)()
        for tp in tps:
            c.position(tp)  # resolve now, so nothing sent after on_ready is missed
        if on_ready is not None:
            on_ready()
        primary = spec[0][1]
        tap = _TruthJoin(writer, {t: r for r, t in spec})
        rule = _StopRule(count, duration_s, stop)
        bar = tqdm(
            total=count, desc=f"record {primary}", unit="msg", disable=not progress, leave=False
        )
        n_primary, reason = 0, None
        try:
            while reason is None:
                for recs in poll_skipping_corrupt(c, 200, _skipped).values():
                    for kr in recs:
                        if reason is not None and kr.topic == primary:
                            continue  # past the cut
                        tap.add(_to_record(kr))
                        if kr.topic == primary:
                            n_primary += 1
                            bar.update(1)
                            reason = rule.reason(n_primary)
                writer.tick()
                reason = reason or rule.reason(n_primary)
        except KeyboardInterrupt:
            reason = "interrupted"
        bar.close()
        others = [tp for tp in tps if tp.topic != primary]
        if others:
            _drain(c, tap, others, drain_s)
        tap.finish()
    finally:
        c.close()
    end_snap, _ = _try_snapshot(s)
    return writer.close(reason, end_snap)


class _TruthJoin:
    """Writes records, holding each truth record back until its frame is recorded.

    So a recording cut at N frames holds the labels of exactly those frames: none of frames past
    the cut (dropped by :meth:`finish`), and no frame without its label unless the label never
    came. Duplicate truth records (an at-least-once producer's retries) are written once. Only
    when both ``frames`` and ``truth`` are recorded; otherwise every record is written as is.
    """

    def __init__(self, writer: RecordingWriter, roles: dict[str, str | None]) -> None:
        self.writer = writer
        self.roles = roles
        self.join = {"frames", "truth"} <= set(roles.values())
        self.frame_ids: set[str] = set()
        self.labelled: set[str] = set()
        self.pending: dict[str, Record] = {}

    @property
    def unlabelled(self) -> int:
        return len(self.frame_ids - self.labelled)

    def add(self, r: Record) -> None:
        role = self.roles[r.topic]
        if not self.join or role not in ("frames", "truth"):
            self.writer.add(r)
            return
        if role == "frames":
            self.writer.add(r)
            fid = (r.header("frame_id") or b"").decode(errors="replace")
            self.frame_ids.add(fid)
            if fid in self.pending:
                self.labelled.add(fid)
                self.writer.add(self.pending.pop(fid))
            return
        key = (r.key or b"").decode(errors="replace")
        if key in self.labelled:
            return
        if key in self.frame_ids:
            self.labelled.add(key)
            self.writer.add(r)
        else:
            self.pending[key] = r

    def finish(self) -> None:
        self.pending.clear()
        if self.join and self.unlabelled:
            warnings.warn(
                f"{self.unlabelled} recorded frames have no truth record",
                RecordingWarning,
                stacklevel=2,
            )


def _partitions(c, topic: str, timeout_s: float = 10.0) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        parts = c.partitions_for_topic(topic)
        if parts:
            return parts
        if time.monotonic() > deadline:
            raise RecordingError(f"topic {topic!r} does not exist (splitee topics create?)")
        time.sleep(0.2)


def _to_record(kr) -> Record:
    hs = [(k, bytes(v or b"")) for k, v in (kr.headers or [])]
    return Record(kr.topic, kr.partition, kr.offset, int(kr.timestamp), kr.key, hs, kr.value)


def _skipped(tp, offset: int, exc: Exception) -> None:
    """A record the Kafka client cannot parse (e.g. a header key that is not UTF-8) cannot be
    recorded: it is skipped, with a warning."""
    warnings.warn(
        f"skipped unparsable record {tp.topic}/{tp.partition}/{offset}: {exc}",
        RecordingWarning,
        stacklevel=2,
    )


def _drain(c, tap: _TruthJoin, tps: list, drain_s: float) -> None:
    """Read the other topics up to their end offsets, and on until every frame is labelled."""
    from splitee.kafka_io import poll_skipping_corrupt

    c.assign(tps)
    ends = c.end_offsets(tps)
    deadline = time.monotonic() + drain_s
    while time.monotonic() < deadline:
        if all(c.position(tp) >= ends[tp] for tp in tps) and not tap.unlabelled:
            return
        for recs in poll_skipping_corrupt(c, 200, _skipped).values():
            for kr in recs:
                tap.add(_to_record(kr))
        tap.writer.tick()
