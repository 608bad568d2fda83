"""Recordings of Kafka topics: Apache Arrow IPC stream files plus a JSON manifest.

A recording is a folder::

    REC/manifest.json     what, when, counts, SHA-256 of every file, settings, policy snapshots
    REC/frames.arrow      one Arrow IPC *stream* file per recorded topic
    REC/truth.arrow

Every ``.arrow`` file has the same columns (:data:`SCHEMA`), one row per Kafka record, in the
order the recorder consumed them (each partition in offset order):

=========== ================================================ ==================================
column      Arrow type                                       meaning
=========== ================================================ ==================================
topic       string                                           source topic
partition   int32                                            source partition
offset      int64                                            source offset
timestamp   timestamp[ms, UTC]                               the record's Kafka timestamp
key         binary (nullable)                                the record key
headers     list<struct<key: string, value: binary>>         the record headers, in order
value       binary (nullable)                                the record value
=========== ================================================ ==================================

Why Arrow IPC *streams*: any Arrow implementation (pyarrow, arrow-rs, DuckDB, polars …) reads
them without splitee, and a stream is a sequence of self-delimiting record batches, so the
recorder writes (and flushes) a batch at a time and a recording cut short by a crash is still
readable up to its last complete batch. :func:`read_topic_file` recovers those batches and says
how many it got. No pickle is involved: values stay opaque bytes.

The manifest (``"format": "splitee-recording/1"``) is written when recording starts with
``"complete": false`` and rewritten when it ends, with the SHA-256, row and batch count of
every file. A complete recording whose files do not match their hashes is refused, with a
message that says whether to suspect truncation; ``allow_partial=True`` (``--allow-partial``)
reads what is left.

This module is the format alone (schema, manifest, writer, reader) and needs no server; the
Kafka recorder that fills it is :mod:`splitee.recorder`.
"""

from __future__ import annotations

import heapq
import json
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel, Field, ValidationError

from splitee.files import sha256_file, write_json_atomic

FORMAT = "splitee-recording/1"
MANIFEST = "manifest.json"
#: Topic roles: recorded under this name, replayed into the topic the settings give the role.
ROLES = ("frames", "truth", "offload", "results")
HEADER_TYPE = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))
SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
        ("key", pa.binary()),
        ("headers", HEADER_TYPE),
        ("value", pa.binary()),
    ],
    metadata={"splitee.format": FORMAT},
)
_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # Arrow IPC end-of-stream marker
_FILE_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]*\.arrow$"
MAX_MANIFEST_BYTES = 64 << 20
#: Columns that every row must have (key and value may be null, as in Kafka).
_NOT_NULL = ("topic", "partition", "offset", "timestamp", "headers")


class RecordingError(ValueError):
    """A recording that cannot be read or trusted; the message says what is wrong and where."""


class RecordingWarning(UserWarning):
    """A recording read only in part (truncated tail, interrupted recording)."""


@dataclass(frozen=True)
class Record:
    """One Kafka record as recorded (``timestamp`` in ms since the epoch)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    headers: list[tuple[str, bytes]]
    value: bytes | None

    @property
    def size(self) -> int:
        """Bytes of key, value and headers (what a replay puts on the wire, roughly)."""
        hs = sum(len(k) + len(v) for k, v in self.headers)
        return len(self.key or b"") + len(self.value or b"") + hs

    def header(self, name: str) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


# --------------------------------------------------------------------------- manifest
class TopicEntry(BaseModel):
    """One recorded topic in the manifest."""

    role: str | None = Field(description="frames, truth, offload, results; None for others")
    topic: str
    file: str = Field(pattern=_FILE_RE)
    records: int = Field(default=0, ge=0)
    batches: int = Field(default=0, ge=0)
    bytes: int = Field(default=0, ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    partitions: dict[str, dict[str, int]] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """The name this topic goes by in a recording (its role, else its topic name)."""
        return self.role or self.topic


class Manifest(BaseModel):
    """``manifest.json``, validated on reading (unknown extra fields are kept)."""

    model_config = {"extra": "allow"}

    format: str
    created_by: str = ""
    complete: bool
    started: str
    ended: str | None = None
    stop_reason: str | None = None
    first_ts_ms: int | None = None
    last_ts_ms: int | None = None
    span_s: float | None = None
    topics: list[TopicEntry]
    counts: dict[str, int] = Field(default_factory=dict)
    settings: dict = Field(default_factory=dict)
    policy: dict = Field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """The recorded time span: last record's timestamp minus the first one's."""
        if self.first_ts_ms is None or self.last_ts_ms is None:
            return 0.0
        return (self.last_ts_ms - self.first_ts_ms) / 1000.0


def read_manifest(folder: Path) -> Manifest:
    """Parse and validate ``folder/manifest.json``; RecordingError says what is wrong."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise RecordingError(f"{folder} is not a recording: it has no {MANIFEST}")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise RecordingError(f"{path}: {path.stat().st_size} bytes, more than any manifest")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RecordingError(f"{path}: not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        fmt = raw.get("format") if isinstance(raw, dict) else None
        raise RecordingError(f"{path}: format {fmt!r} is not {FORMAT!r}")
    try:
        m = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise RecordingError(f"{path}: invalid manifest: {exc}") from None
    files = [t.file for t in m.topics]
    if len(set(files)) != len(files) or len({t.key for t in m.topics}) != len(m.topics):
        raise RecordingError(f"{path}: two topics share a file or a name")
    return m


# --------------------------------------------------------------------------- writing
def _file_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", key).lstrip("._-") + ".arrow"


class TopicWriter:
    """One topic's Arrow stream file, written a batch at a time so a crash loses one batch.

    Rows are buffered and written as a record batch every ``batch_rows`` rows or ``flush_s``
    seconds, whichever comes first; each batch goes straight to the OS (unbuffered file).
    """

    def __init__(self, path: Path, entry: TopicEntry, batch_rows: int, flush_s: float) -> None:
        self.path = path
        self.entry = entry
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        meta = {**SCHEMA.metadata, b"splitee.topic": entry.topic.encode()}
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_stream(self._sink, SCHEMA.with_metadata(meta))
        self._rows: list[Record] = []
        self._last_flush = time.monotonic()

    def add(self, rec: Record) -> None:
        self._rows.append(rec)
        p = self.entry.partitions.setdefault(str(rec.partition), {"first_offset": rec.offset})
        p["last_offset"] = rec.offset
        p["records"] = p.get("records", 0) + 1
        self.entry.records += 1
        self.entry.bytes += rec.size
        if len(self._rows) >= self.batch_rows:
            self.flush()

    def tick(self) -> None:
        """Write the buffered rows if they have waited ``flush_s`` (called while idle too)."""
        if self._rows and time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._rows:
            return
        self._writer.write_batch(to_batch(self._rows))
        self.entry.batches += 1
        self._rows = []

    def close(self) -> None:
        self.flush()
        self._writer.close()
        self._sink.close()


def to_batch(rows: list[Record]) -> pa.RecordBatch:
    """Records → one Arrow record batch with :data:`SCHEMA`."""
    return pa.record_batch(
        [
            pa.array([r.topic for r in rows], pa.string()),
            pa.array([r.partition for r in rows], pa.int32()),
            pa.array([r.offset for r in rows], pa.int64()),
            pa.array([r.timestamp for r in rows], pa.timestamp("ms", tz="UTC")),
            pa.array([r.key for r in rows], pa.binary()),
            pa.array([[{"key": k, "value": v} for k, v in r.headers] for r in rows], HEADER_TYPE),
            pa.array([r.value for r in rows], pa.binary()),
        ],
        schema=SCHEMA,
    )


class RecordingWriter:
    """Writes a recording folder: the topic files and the manifest (first incomplete, then final).

    The Kafka recorder (:func:`splitee.recorder.record`) feeds it consumed records; tests and
    tools can feed it any records (e.g. a camera's frames) to build a recording without a broker.
    """

    def __init__(
        self,
        out: Path,
        topics: list[tuple[str | None, str]],
        settings: dict | None = None,
        policy_start: dict | None = None,
        batch_rows: int = 500,
        flush_s: float = 1.0,
        policy_error: str | None = None,
    ) -> None:
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise RecordingError(f"{out} exists and is not an empty folder; pick a new --out")
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        entries = [TopicEntry(role=r, topic=t, file=_file_name(r or t)) for r, t in topics]
        self.manifest = Manifest(
            format=FORMAT,
            created_by=f"splitee {_version()}",
            complete=False,
            started=_now_iso(),
            topics=entries,
            settings=settings or {},
            policy={"start": policy_start, "end": None, "error": policy_error},
        )
        self.writers = {e.topic: TopicWriter(out / e.file, e, batch_rows, flush_s) for e in entries}
        self._save()

    def add(self, rec: Record) -> None:
        self.writers[rec.topic].add(rec)
        m = self.manifest
        m.first_ts_ms = (
            rec.timestamp if m.first_ts_ms is None else min(m.first_ts_ms, rec.timestamp)
        )
        m.last_ts_ms = rec.timestamp if m.last_ts_ms is None else max(m.last_ts_ms, rec.timestamp)

    def tick(self) -> None:
        for w in self.writers.values():
            w.tick()

    def close(self, stop_reason: str, policy_end: dict | None = None) -> Manifest:
        """Close every file, hash it and write the final manifest."""
        m = self.manifest
        for w in self.writers.values():
            w.close()
            w.entry.sha256 = sha256_file(w.path)
        m.complete = True
        m.ended = _now_iso()
        m.stop_reason = stop_reason
        m.span_s = round(m.seconds, 3)
        m.counts = {e.key: e.records for e in m.topics}
        m.policy["end"] = policy_end
        self._save()
        return m

    def _save(self) -> None:
        write_json_atomic(self.out / MANIFEST, self.manifest.model_dump(mode="json"))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("splitee")
    except PackageNotFoundError:
        return "unknown"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------- reading
@dataclass
class TopicData:
    """One recorded topic: its manifest entry, its rows, and how much of it could be read."""

    entry: TopicEntry
    table: pa.Table
    batches: int
    truncated: bool = False

    def records(self) -> Iterator[Record]:
        """Rows as :class:`Record` objects, in file order.

        Timestamps are read as integers, never as datetimes: any int64 is a valid Arrow
        timestamp, but not every one is a Python ``datetime``.
        """
        cols = self.table.drop_columns(["timestamp"]).to_pydict()
        ts = self.table.column("timestamp").cast(pa.int64()).to_pylist()
        for i in range(self.table.num_rows):
            yield Record(
                cols["topic"][i],
                cols["partition"][i],
                cols["offset"][i],
                ts[i],
                cols["key"][i],
                [(h["key"], h["value"] or b"") for h in cols["headers"][i]],
                cols["value"][i],
            )


@dataclass
class Recording:
    """A recording folder, read and checked."""

    path: Path
    manifest: Manifest
    topics: dict[str, TopicData] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def topic(self, key: str) -> TopicData:
        """A topic by role (``frames``) or topic name; RecordingError if it was not recorded."""
        if key not in self.topics:
            raise RecordingError(f"{self.path} has no {key!r} topic (it has {sorted(self.topics)})")
        return self.topics[key]

    def merged(self, keys: list[str] | None = None) -> list[tuple[str, Record]]:
        """Every record as (topic key, record), merged by timestamp across partitions.

        Each (topic, partition) keeps its recorded offset order, so per-key order holds even
        where timestamps go backwards (several producers); between partitions the earlier
        timestamp comes first.
        """
        runs: dict[tuple[str, int], list[tuple[str, Record]]] = {}
        for k, td in self.topics.items():
            if keys is not None and k not in keys:
                continue
            for r in td.records():
                runs.setdefault((k, r.partition), []).append((k, r))
        for run in runs.values():
            run.sort(key=lambda kr: kr[1].offset)
        return list(heapq.merge(*runs.values(), key=lambda kr: kr[1].timestamp))


def read_topic_file(path: Path, allow_truncated: bool) -> tuple[pa.Table, int, bool]:
    """Read an Arrow IPC stream file: (table, complete batches read, truncated?).

    A truncated tail (a crash mid-write, a cut copy) ends the read at the last complete batch;
    with ``allow_truncated`` that is a :class:`RecordingWarning`, else a RecordingError.
    Every batch is fully validated, so corrupt offsets cannot index outside their buffers.
    Whatever pyarrow raises on corrupt bytes (any :class:`pyarrow.ArrowException`, including
    ``ArrowNotImplementedError`` for a flipped type code) becomes a RecordingError here, the one
    error type that callers of a recording handle.
    """
    if not path.is_file():
        raise RecordingError(f"{path} is missing")
    if path.stat().st_size == 0:  # the recorder stopped before this topic's first batch
        if not allow_truncated:
            raise RecordingError(f"{path} is empty; --allow-partial reads it as no records")
        warnings.warn(f"{path}: empty (0 records recovered)", RecordingWarning, stacklevel=2)
        return SCHEMA.empty_table(), 0, True
    try:
        reader = pa.ipc.open_stream(pa.memory_map(str(path)))  # zero-copy reads
    except (pa.ArrowException, OSError) as exc:
        raise RecordingError(f"{path} is not an Arrow IPC stream: {exc}") from None
    if not reader.schema.remove_metadata().equals(SCHEMA.remove_metadata()):
        raise RecordingError(
            f"{path}: columns {_field_names(reader.schema)} / types do not match the recording "
            f"schema {SCHEMA.names} (see splitee.recording.SCHEMA)"
        )
    batches: list[pa.RecordBatch] = []
    problem = None
    while True:
        try:
            b = reader.read_next_batch()
        except StopIteration:
            break
        except (pa.ArrowException, OSError) as exc:
            problem = str(exc)
            break
        try:
            b.validate(full=True)
            _check_nulls(b)
        except pa.ArrowException as exc:
            raise RecordingError(f"{path}: batch {len(batches) + 1} is corrupt: {exc}") from None
        batches.append(b)
    if problem is None:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - len(_EOS)))
            if f.read() != _EOS:
                problem = "no end-of-stream marker"
    table = pa.Table.from_batches(batches, schema=reader.schema)
    if problem is not None:
        msg = (
            f"{path}: truncated after {len(batches)} complete record batches "
            f"({table.num_rows} records recovered; {problem})"
        )
        if not allow_truncated:
            raise RecordingError(msg + "; --allow-partial reads the complete batches")
        warnings.warn(msg, RecordingWarning, stacklevel=2)
    return table, len(batches), problem is not None


def _field_names(schema: pa.Schema) -> list[str]:
    """Field names for a message; a corrupt file's names need not be UTF-8 (pyarrow then raises
    UnicodeDecodeError on ``schema.names``), so one that is not says so."""
    names = []
    for i in range(len(schema)):
        try:
            names.append(schema.field(i).name)
        except UnicodeDecodeError:
            names.append("<not UTF-8>")
    return names


def _check_nulls(b: pa.RecordBatch) -> None:
    """Arrow fields are nullable, but a row without topic, partition, offset, timestamp or
    headers, or a header without a key, is no Kafka record: ArrowInvalid."""
    for name in _NOT_NULL:
        if b.column(name).null_count:
            raise pa.ArrowInvalid(f"column {name!r} has nulls")
    hs = b.column("headers").flatten()
    if hs.null_count or hs.field("key").null_count:
        raise pa.ArrowInvalid("a header is null or has no key")


def open_recording(path: Path, allow_partial: bool = False) -> Recording:
    """Read a recording folder, checking the manifest, every file's SHA-256 and its schema.

    A recording whose manifest says it never completed (the recorder was killed) is read up to
    each file's last complete batch, with a warning. A complete one must match its hashes unless
    ``allow_partial`` (then a mismatch is a warning and truncated tails are recovered).
    """
    path = Path(path)
    m = read_manifest(path)
    rec = Recording(path, m)
    partial = allow_partial or not m.complete
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RecordingWarning)
        if not m.complete:
            warnings.warn(
                f"{path}: the recording never completed (recorder interrupted); "
                "reading every complete batch, without hashes to check",
                RecordingWarning,
                stacklevel=2,
            )
        for e in m.topics:
            fp = path / e.file
            if m.complete and fp.is_file() and e.sha256 is not None:
                got = sha256_file(fp)
                if got != e.sha256:
                    size = fp.stat().st_size
                    msg = (
                        f"{fp}: SHA-256 {got[:16]}… does not match the manifest's "
                        f"{e.sha256[:16]}… ({size} bytes): the file was modified, corrupted or "
                        "truncated"
                    )
                    if not allow_partial:
                        raise RecordingError(msg + "; --allow-partial reads what is readable")
                    warnings.warn(msg, RecordingWarning, stacklevel=2)
            table, nb, cut = read_topic_file(fp, partial)
            if m.complete and not cut and table.num_rows != e.records:
                raise RecordingError(
                    f"{fp}: {table.num_rows} records, the manifest says {e.records}"
                )
            rec.topics[e.key] = TopicData(e, table, nb, cut)
    for w in caught:
        if issubclass(w.category, RecordingWarning):
            rec.warnings.append(str(w.message))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return rec
