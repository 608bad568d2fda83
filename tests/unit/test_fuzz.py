"""Property tests of every decoder of network and recorded input: only the project's own error
type may escape, whatever the bytes.

Inputs are generated from scratch and mutated from valid ones (byte flips, truncations,
insertions), since mutations reach the deeper checks that random bytes never pass. Example
counts come from the hypothesis profile (``tests/conftest.py``): in CI a fixed, derandomized
100 per test, a few seconds of the unit tier; ``HYPOTHESIS_PROFILE=fuzz`` runs 50 times as many
random ones. Every failure found that way is kept below as an ``@example``.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatchBuilder

from policy_store.redis_store import SNAPSHOT_FORMAT, load_snapshot
from splitee.files import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    checkpoint_metadata,
    exit_depths,
    model_alpha,
    reading_checkpoint,
)
from splitee.images import decode_fit
from splitee.jpeg import CorruptFrameError, decode_jpeg, encode_jpeg
from splitee.kafka_io import dlq_record
from splitee.recording import (
    MANIFEST,
    Record,
    RecordingError,
    RecordingWarning,
    RecordingWriter,
    TopicData,
    TopicEntry,
    read_manifest,
    read_topic_file,
)
from splitee.td import Learned
from splitee.wire import (
    FP16_MAX,
    REASONS,
    FrameMeta,
    OffloadMeta,
    Result,
    WireError,
    decode_frame_id,
    decode_tensor,
    decode_truth,
    encode_tensor,
)

# Counts, seed and database from the profile loaded in tests/conftest.py.
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
EXITS = 9

#: Edits of valid bytes: (operation, position, payload); positions wrap around the data, so an
#: edit list is a plain value that an ``@example`` can spell out.
EDITS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "cut", "insert", "dup"]),
        st.integers(0, 1 << 20),
        st.binary(min_size=1, max_size=16),
    ),
    min_size=1,
    max_size=4,
)


def edited(valid: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    """``valid`` with each edit applied: a byte flipped to ``payload[0]``, a cut keeping the
    head or the tail (``payload[0]`` odd or even), ``payload`` inserted, or up to 64 bytes
    duplicated in place."""
    data = bytearray(valid)
    for op, at, payload in edits:
        pos = at % max(len(data), 1)
        if op == "flip" and data:
            data[pos] = payload[0]
        elif op == "cut":
            data = data[:pos] if payload[0] % 2 else data[pos:]
        elif op == "insert":
            data[pos:pos] = payload
        else:
            data[pos:pos] = data[pos : pos + payload[0] % 64 + 1]
    return bytes(data)


def mutated(valid: bytes) -> st.SearchStrategy[bytes]:
    """``valid`` with a few byte flips, a cut, an insertion or a splice."""
    return EDITS.map(lambda edits: edited(valid, edits))


def only_wire_errors(fn, *args, **kwargs):
    """Run a decoder; a WireError with a registered reason is fine, anything else fails."""
    try:
        return fn(*args, **kwargs)
    except WireError as exc:
        assert exc.reason in REASONS
        return None


# --------------------------------------------------------------------------- tensors
ARRAYS = st.tuples(
    st.lists(st.integers(1, 6), min_size=1, max_size=4),
    st.sampled_from(["float32", "float16", "int8"]),
    st.integers(0, 2**32 - 1),
)


@FUZZ
@given(ARRAYS)
def test_tensors_roundtrip(spec):
    shape, codec, seed = spec
    x = np.random.default_rng(seed).normal(0, 10, shape).astype(np.float32)
    y = decode_tensor(encode_tensor(x, codec))
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.abs(y - x).max() <= 0.05 * np.abs(x).max() + 1e-6


@FUZZ
@given(st.data())
def test_mutated_tensors_raise_only_wire_errors(data):
    shape, codec, seed = data.draw(ARRAYS)
    x = np.random.default_rng(seed).normal(0, 10, shape).astype(np.float32)
    raw = data.draw(st.one_of(mutated(encode_tensor(x, codec)), st.binary(max_size=64)))
    y = only_wire_errors(decode_tensor, raw, max_bytes=1 << 20)
    if y is not None:
        assert 1 <= y.ndim <= 4 and np.isfinite(y).all() and np.abs(y).max() <= FP16_MAX


# --------------------------------------------------------------------------- headers
HEADER_NAMES = [
    "frame_id", "camera_id", "capture_ts", "schema", "run_id", "snr_db", "arm", "confidences",
    "codec", "policy", "edge_ts", "edge_worker", "pair", "alpha", "td", "frame_bytes",
]  # fmt: skip
NUMBERISH = st.sampled_from(
    [b"0", b"1", b"-1", b"2", b"8", b"11", b"0.5", b"1e308", b"nan", b"inf", b"", b"1_0", b" 3"]
)
VALUES = st.one_of(st.binary(max_size=40), NUMBERISH, st.text(max_size=20).map(str.encode))
KEYS = st.one_of(st.sampled_from(HEADER_NAMES), st.text(max_size=10), st.binary(max_size=10))


def valid_headers() -> list[tuple[str, bytes]]:
    frame = FrameMeta("cam-1:t:00000001", "cam-1", 1.7e9, run_id="r", snr_db=4.0).headers()
    om = OffloadMeta(
        arm=2,
        confidences=[0.2, 0.3, 0.4] + [None] * 6,
        codec="float16",
        policy="global",
        edge_ts=1.7e9,
        edge_worker="e",
        pair=11,
        alpha=0.6,
        frame_bytes=20_000,
    )
    return frame + om.headers()


@st.composite
def headers(draw) -> list:
    """Valid headers with values replaced, dropped or added, or random ones."""
    if draw(st.booleans()):
        return draw(st.lists(st.tuples(KEYS, VALUES), max_size=20))
    hs = valid_headers()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(hs) - 1))
        op = draw(st.sampled_from(["value", "mutate", "drop", "add"]))
        if op == "value":
            hs[i] = (hs[i][0], draw(VALUES))
        elif op == "mutate":
            hs[i] = (hs[i][0], draw(mutated(hs[i][1])))
        elif op == "drop":
            del hs[i]
        else:
            hs.insert(i, (draw(KEYS), draw(VALUES)))
    return hs


@FUZZ
@given(headers())
def test_frame_headers_raise_only_wire_errors(hs):
    m = only_wire_errors(FrameMeta.from_headers, hs)
    if m is not None:
        assert m.frame_id and len(m.frame_id) <= 256 and math.isfinite(m.capture_ts)
        assert m.snr_db is None or math.isfinite(m.snr_db)


@FUZZ
@given(headers())
def test_offload_headers_raise_only_wire_errors(hs):
    om = only_wire_errors(OffloadMeta.from_headers, hs, exits=EXITS, pairs=2 * EXITS)
    if om is not None:
        assert len(om.confidences) == EXITS and om.confidences[om.arm] is not None
        assert 0 <= om.arm < EXITS - 1
        assert all(c is None or 0.0 <= c <= 1.0 for c in om.confidences)
        assert om.pair is None or (0 <= om.pair < 2 * EXITS and om.pair % EXITS == om.arm)
        assert om.alpha is None or 0.0 <= om.alpha <= 1.0


# --------------------------------------------------------------------------- JSON records
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
GOOD_RESULT = Result("f1", "cam-1", 3, 0.9, 2, "cloud", 1.7e9, 1.7e9 + 0.1, "p", "r", 9, 0.5)


@st.composite
def result_json(draw) -> bytes:
    obj = json.loads(GOOD_RESULT.encode())
    how = draw(st.sampled_from(["field", "drop", "mutate", "random"]))
    if how == "field":
        obj[draw(st.sampled_from(sorted(obj)))] = draw(JSON)
    elif how == "drop":
        del obj[draw(st.sampled_from(sorted(obj)))]
    elif how == "mutate":
        return draw(mutated(json.dumps(obj).encode()))
    else:
        return json.dumps(draw(JSON)).encode()
    return json.dumps(obj).encode()


@FUZZ
@given(result_json())
def test_results_raise_only_wire_errors(raw):
    r = only_wire_errors(Result.decode, raw)
    if r is not None:
        assert isinstance(r.frame_id, str) and isinstance(r.prediction, int)
        assert r.where in ("edge", "cloud") and 0.0 <= r.confidence <= 1.0
        hash(r.frame_id)  # usable as a key by every reader


@FUZZ
@given(st.one_of(st.builds(lambda o: json.dumps(o).encode(), JSON), st.binary(max_size=60)))
def test_truth_raises_only_wire_errors(raw):
    good = b'{"label": 3, "camera_id": "cam-1", "distortion": "noise:0.1", "index": 5}'
    for candidate in (raw, raw[:1] + good[1:], good[:-1] + raw):
        t = only_wire_errors(decode_truth, candidate)
        if t is not None:
            assert isinstance(t["label"], int) and not isinstance(t["label"], bool)
    only_wire_errors(decode_frame_id, raw)


# --------------------------------------------------------------------------- frames
SOI = b"\xff\xd8\xff"
JPEG = encode_jpeg(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))


@FUZZ
@given(st.one_of(mutated(JPEG), st.binary(max_size=64), st.binary(max_size=64).map(SOI.__add__)))
def test_frames_raise_only_frame_errors(raw):
    for decode, shape in ((decode_jpeg, (32, 32, 3)), (lambda d: decode_fit(d, 24), (24, 24, 3))):
        try:
            img = decode(raw)
        except CorruptFrameError as exc:
            assert exc.reason in {"corrupt_jpeg", "wrong_shape", "frame_too_large"}
        else:
            assert img.shape == shape and img.dtype == np.uint8


# --------------------------------------------------------------------------- dead letters
@FUZZ
@given(
    st.one_of(st.none(), st.binary(max_size=2000)),
    st.one_of(st.none(), st.binary(max_size=5000)),
    st.lists(st.tuples(KEYS, st.one_of(st.none(), st.binary(max_size=1500))), max_size=5),
    st.integers(2048, 6000),
)
def test_dead_letters_always_fit(key, value, hs, limit):
    k, v, h = dlq_record("corrupt_jpeg", "detail", "frames", 0, 1, key, value, hs, limit)
    assert DefaultRecordBatchBuilder.estimate_size_in_bytes(k, v, h) <= limit
    assert all(isinstance(a, str) and isinstance(b, bytes) for a, b in h)
    assert v == (value or b"")[: len(v)]


# --------------------------------------------------------------------------- recordings
@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """A small complete recording: one topic of 20 records in 4 batches."""
    out = tmp_path_factory.mktemp("rec") / "r"
    w = RecordingWriter(out, [("frames", "frames")], batch_rows=5)
    for i in range(20):
        hs = FrameMeta(f"cam-1:t:{i}", "cam-1", 1.7e9 + i).headers()
        w.add(Record("frames", i % 2, i, 1_700_000_000_000 + i, b"cam-1", hs, JPEG))
    w.close("count")
    return out


def flip(at: int, value: int) -> list[tuple[str, int, bytes]]:
    return [("flip", at, bytes([value]))]


# Found by the fuzz profile (pyarrow 26): each single flip of the fixture's frames.arrow once
# escaped the reader as a pyarrow or Python error instead of a RecordingError.
@settings(FUZZ, max_examples=FUZZ.max_examples * 2 // 5)  # each example writes two files
@given(arrow_edits=EDITS, manifest_edits=st.one_of(st.just([]), EDITS))
@example(arrow_edits=flip(571, 234), manifest_edits=[])  # ArrowNotImplementedError: < 8 bits
@example(arrow_edits=flip(568, 222), manifest_edits=[])  # ArrowNotImplementedError: > 64 bits
@example(arrow_edits=flip(449, 250), manifest_edits=[])  # field name not UTF-8: on .names
@example(arrow_edits=flip(1462, 147), manifest_edits=[])  # timestamp past datetime's range
@example(arrow_edits=flip(24215, 60), manifest_edits=[])  # timestamp past a C int of years
def test_mutated_recordings_raise_only_recording_errors(
    recording, tmp_path_factory, arrow_edits, manifest_edits
):
    arrow = (recording / "frames.arrow").read_bytes()
    manifest = (recording / MANIFEST).read_bytes()
    folder = tmp_path_factory.mktemp("mut")
    (folder / "frames.arrow").write_bytes(edited(arrow, arrow_edits))
    (folder / MANIFEST).write_bytes(edited(manifest, manifest_edits))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecordingWarning)
        with contextlib.suppress(RecordingError):
            read_manifest(folder)
        try:
            table, batches, cut = read_topic_file(folder / "frames.arrow", allow_truncated=True)
        except RecordingError:
            return
    entry = TopicEntry(role="frames", topic="frames", file="frames.arrow")
    rows = list(TopicData(entry, table, batches, cut).records())
    assert len(rows) <= 20 and all(r.size >= 0 for r in rows)


# --------------------------------------------------------------------------- user files
CHECKPOINT = safetensors.numpy.save(
    {"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
    metadata={"format": CHECKPOINT_FORMAT, "exit_depths": "[2, 4, 9]", "alpha": "0.6"},
)
SNAPSHOT = json.dumps(
    {"format": SNAPSHOT_FORMAT, "arms": 2, "policies": {"global": {"t": 3, "n": [1, 2]}}}
).encode()
TD_FILE = json.dumps(Learned(np.ones(5), 0.1, np.zeros(5), np.ones(5), 0.4).to_json()).encode()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("files")


@FUZZ
@given(st.one_of(mutated(CHECKPOINT), st.binary(max_size=64)))
def test_mutated_checkpoints_raise_only_value_errors(scratch, raw):
    """safetensors' own SafetensorError is no ValueError: it must not reach the CLI bare."""
    path = scratch / "model.safetensors"
    path.write_bytes(raw)
    for read in (checkpoint_metadata, exit_depths, model_alpha):
        with contextlib.suppress(ValueError):
            read(path)
    with contextlib.suppress(CheckpointError), reading_checkpoint(path):
        safetensors.numpy.load_file(str(path))


@FUZZ
@given(st.one_of(mutated(SNAPSHOT), mutated(TD_FILE), st.binary(max_size=64)))
def test_mutated_policy_files_raise_only_value_errors(scratch, raw):
    path = scratch / "policy.json"
    path.write_bytes(raw)
    for read in (load_snapshot, Learned.load):
        with contextlib.suppress(ValueError):
            read(path)
