"""Recordings without a broker: the file format, damaged files, a refused offline policy.

Recordings here are written with :class:`splitee.recording.RecordingWriter` from a camera's
frames (``tests/recordings.py``), exactly as the Kafka recorder writes what it consumes; the
offline A/B on the shipped model is in ``tests/slow/test_offline_ab.py``, the live
record/replay round trip in ``tests/servers/test_recording_live.py``.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from producers.camera import Frame
from splitee.cli import main
from splitee.data import iter_zip_frames
from splitee.recording import (
    MANIFEST,
    Record,
    RecordingError,
    RecordingWarning,
    RecordingWriter,
    open_recording,
)
from splitee.replay import rewrite
from tests.conftest import SAMPLE
from tests.recordings import camera_recording


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    return [Frame(b, y, i) for i, (_, b, y) in enumerate(iter_zip_frames(SAMPLE))]


@pytest.fixture(scope="module")
def small_rec(tmp_path_factory, frames):
    out = tmp_path_factory.mktemp("rec") / "small"
    camera_recording(out, frames, 60, batch_rows=10)
    return out


def damaged(small_rec, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(small_rec, out)
    return out


# --------------------------------------------------------------------------- format
def test_recording_is_plain_arrow_with_a_manifest(small_rec, frames):
    m = json.loads((small_rec / MANIFEST).read_text())
    assert m["format"] == "splitee-recording/1" and m["complete"]
    assert m["counts"] == {"frames": 60, "truth": 60}
    assert {t["file"] for t in m["topics"]} == {"frames.arrow", "truth.arrow"}
    assert all(len(t["sha256"]) == 64 and t["batches"] == 6 for t in m["topics"])
    assert m["last_ts_ms"] - m["first_ts_ms"] == 2360
    # Any Arrow reader opens it; no splitee code needed.
    table = pa.ipc.open_stream(small_rec / "frames.arrow").read_all()
    assert table.schema.names == [
        "topic",
        "partition",
        "offset",
        "timestamp",
        "key",
        "headers",
        "value",
    ]
    assert table.column("value")[0].as_py() == frames[0].jpeg
    heads = {h["key"]: h["value"] for h in table.column("headers")[0].as_py()}
    assert heads["frame_id"].endswith(b":00000000") and heads["schema"] == b"1"
    rec = open_recording(small_rec)
    assert rec.warnings == [] and len(rec.merged()) == 120


def test_rewrite_changes_only_the_documented_fields():
    hs = [("frame_id", b"cam-1:x:00000001"), ("camera_id", b"cam-1"), ("capture_ts", b"1.5")]
    hs += [("schema", b"1")]
    frame = Record("frames", 0, 7, 1000, b"cam-1", hs, b"jpeg")
    key, value, headers = rewrite("frames", frame, "R", 2, 99.0)
    assert key == b"cam-1" and value == b"jpeg"
    assert headers == [
        ("frame_id", b"R/2/cam-1:x:00000001"),
        ("camera_id", b"cam-1"),
        ("capture_ts", b"99.0"),
        ("schema", b"1"),
        ("run_id", b"R"),
    ]
    truth = Record("truth", 0, 7, 1000, b"cam-1:x:00000001", [], b'{"label": 3, "run_id": ""}')
    key, value, headers = rewrite("truth", truth, "R", 0, 99.0)
    assert key == b"R/0/cam-1:x:00000001" and headers == []
    assert json.loads(value) == {"label": 3, "run_id": "R"}


# --------------------------------------------------------------------------- damage
def test_flipped_byte_fails_the_hash_check(small_rec, tmp_path):
    rec = damaged(small_rec, tmp_path)
    data = bytearray((rec / "frames.arrow").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (rec / "frames.arrow").write_bytes(bytes(data))
    with pytest.raises(RecordingError, match=r"frames\.arrow: SHA-256 .* does not match"):
        open_recording(rec)


def test_manifest_with_a_wrong_hash_is_refused(small_rec, tmp_path):
    rec = damaged(small_rec, tmp_path)
    m = json.loads((rec / MANIFEST).read_text())
    m["topics"][1]["sha256"] = "0" * 64
    (rec / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(RecordingError, match=r"truth\.arrow: SHA-256 .* modified, corrupted"):
        open_recording(rec)
    res = CliRunner().invoke(main, ["replay", str(rec), "--offline", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "does not match the manifest" in res.output


@pytest.mark.filterwarnings("ignore::splitee.recording.RecordingWarning")
def test_truncated_tail_reads_every_complete_batch_with_a_warning(small_rec, tmp_path):
    rec = damaged(small_rec, tmp_path)
    path = rec / "frames.arrow"
    path.write_bytes(path.read_bytes()[:-700])  # inside the 6th (last) batch
    with pytest.raises(RecordingError, match="truncated"):
        open_recording(rec)
    with pytest.warns(RecordingWarning, match=r"truncated after 5 complete record batches"):
        r = open_recording(rec, allow_partial=True)
    assert r.topic("frames").table.num_rows == 50 and r.topic("frames").truncated
    assert r.topic("truth").table.num_rows == 60
    assert any("truncated after 5" in w for w in r.warnings)


@pytest.mark.filterwarnings("ignore::splitee.recording.RecordingWarning")
def test_interrupted_recording_is_readable_up_to_its_last_batch(tmp_path, frames):
    """The recorder killed mid-way: manifest says incomplete, files have no end marker."""
    w = RecordingWriter(tmp_path / "cut", [("frames", "frames")], batch_rows=10)
    for i in range(25):
        w.add(Record("frames", 0, i, 1000 + i, b"k", [("frame_id", b"f%d" % i)], frames[i].jpeg))
    # no close(): 2 batches are on disk, 5 rows were still buffered
    with pytest.warns(RecordingWarning, match="never completed"):
        r = open_recording(tmp_path / "cut")
    assert r.topic("frames").table.num_rows == 20
    assert not r.manifest.complete


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda p: p.write_text("{not json"), "not valid JSON"),
        (lambda p: p.write_text('{"format": "other/9"}'), "format 'other/9'"),
        (
            lambda p: p.write_text(p.read_text().replace('"frames.arrow"', '"../x.arrow"')),
            "invalid manifest",
        ),
        (lambda p: p.unlink(), "has no manifest.json"),
    ],
)
def test_bad_manifests_fail_clearly(small_rec, tmp_path, edit, match):
    rec = damaged(small_rec, tmp_path)
    edit(rec / MANIFEST)
    with pytest.raises(RecordingError, match=match):
        open_recording(rec)


def test_garbage_or_foreign_arrow_files_fail_clearly(small_rec, tmp_path):
    rec = damaged(small_rec, tmp_path)
    (rec / "frames.arrow").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(RecordingError, match="not an Arrow IPC stream"):
        open_recording(rec, allow_partial=True)
    t = pa.table({"x": [1, 2]})
    with pa.ipc.new_stream(str(rec / "frames.arrow"), t.schema) as w:
        w.write_table(t)
    with pytest.raises(RecordingError, match="do not match the recording schema"):
        open_recording(rec, allow_partial=True)


def test_offline_refuses_unknown_policies(small_rec, tmp_path):
    res = CliRunner().invoke(
        main, ["replay", str(small_rec), "--offline", "--policies", "nope", "--out", str(tmp_path)]
    )
    assert res.exit_code == 1 and "unknown policy 'nope'" in res.output
