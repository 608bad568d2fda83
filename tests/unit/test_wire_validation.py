"""Every poison record of the operator's fault report (issue 12), against the decoders.

Each one crashed a worker before; each must now raise the project's error (``WireError``, with
a reason from the closed set) or be skipped and counted by a reader.
"""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from kafka.record.default_records import DefaultRecordBatchBuilder

from splitee.jpeg import CorruptFrameError, decode_jpeg, encode_jpeg
from splitee.kafka_io import dlq_headers, dlq_record
from splitee.metrics import OTHER_LABEL, bounded_label
from splitee.observability.evaluator import EvalState
from splitee.results import ResultsView
from splitee.wire import (
    REASONS,
    FrameMeta,
    OffloadMeta,
    Result,
    WireError,
    decode_frame_id,
    decode_tensor,
    decode_truth,
    encode_tensor,
    header_map,
)

EXITS = 9


def offload_headers(**replace: bytes) -> dict[str, bytes]:
    """Valid frame + offload headers (arm 2 of 9, threshold pair 11 = α-grid row 1), with
    some values replaced."""
    frame = FrameMeta("cam-1:t:00000001", "cam-1", 1.7e9).headers()
    conf = [0.2, 0.3, 0.4] + [None] * 6
    om = OffloadMeta(
        arm=2,
        confidences=conf,
        codec="float16",
        policy="global",
        edge_ts=1.7e9,
        edge_worker="edge-1",
        pair=11,
        alpha=0.6,
        frame_bytes=20_000,
    )
    return {**dict(frame + om.headers()), **replace}


def reason(exc: pytest.ExceptionInfo) -> str:
    assert exc.value.reason in REASONS
    return exc.value.reason


def test_valid_offload_headers_parse():
    om = OffloadMeta.from_headers(offload_headers(), exits=EXITS, pairs=2 * EXITS)
    assert (om.arm, om.pair, om.alpha, om.codec) == (2, 11, 0.6, "float16")
    assert om.frame_bytes == 20_000
    assert om.confidences[:3] == [0.2, 0.3, 0.4] and om.confidences[3] is None


@pytest.mark.parametrize(
    "field,value,why",
    [
        ("pair", b"4000000", "bad_pair"),  # out of range: wrote outside the bandit's arms
        ("pair", b"12", "bad_pair"),  # a pair of another arm
        ("pair", b"-1", "bad_pair"),
        ("alpha", b"1.5", "bad_alpha"),
        ("confidences", b"[0.2,0.3,null,null,null,null,null,null,null]", "bad_confidences"),
        ("confidences", b"[" * 3000 + b"]" * 3000, "bad_confidences"),  # nested 3000 deep
        ("confidences", b"[0.2,0.3," + b"9" * 400 + b",null,null,null,null,null,null]", None),
        ("confidences", b"[0.2,0.3,Infinity,null,null,null,null,null,null]", "bad_confidences"),
        ("confidences", b"[0.2,0.3,NaN,null,null,null,null,null,null]", "bad_confidences"),
        ("confidences", b"[0.2,0.3,1e300,null,null,null,null,null,null]", "bad_confidences"),
        ("confidences", b"[0.2,0.3,0.4]", "bad_confidences"),  # not one per exit
        ("confidences", b'[0.2,0.3,"0.4",null,null,null,null,null,null]', "bad_confidences"),
        ("confidences", b"[0.2,0.3,[0.4],null,null,null,null,null,null]", "bad_confidences"),
        ("arm", b"8", "bad_arm"),  # the final exit is never offloaded
        ("arm", b"9" * 400, "bad_header"),
        ("codec", b"bfloat16", "bad_codec"),
        ("edge_ts", b"inf", "bad_header"),
        ("policy", b"\xff\xfe", "bad_header"),
        ("policy", b"p" * 300, "bad_header"),
        ("td", b"yes", "bad_header"),
        ("frame_bytes", b"0", "bad_header"),
        ("frame_bytes", b"-5", "bad_header"),
        ("frame_bytes", str(1 << 31).encode(), "bad_header"),
        ("frame_bytes", b"12.5", "bad_header"),
    ],
)
def test_poison_offload_headers_raise_wire_error(field, value, why):
    with pytest.raises(WireError) as e:
        OffloadMeta.from_headers(offload_headers(**{field: value}), exits=EXITS, pairs=2 * EXITS)
    assert reason(e) == (why or "bad_confidences")


def test_pair_and_alpha_come_together():
    h = offload_headers()
    del h["alpha"]
    with pytest.raises(WireError) as e:
        OffloadMeta.from_headers(h, exits=EXITS, pairs=2 * EXITS)
    assert reason(e) == "bad_pair"


def test_frame_headers_in_any_encoding_raise_wire_error():
    good = FrameMeta("cam-1:t:1", "cam-1", 1.7e9, snr_db=3.5).headers()
    assert FrameMeta.from_headers(good).snr_db == 3.5
    bad_key = [*good, (b"\xff\xfekey", b"x")]  # a header key that is not UTF-8
    for headers in (
        bad_key,
        [(k, v if k != "camera_id" else b"\xc3\x28") for k, v in good],
        [(k, v if k != "capture_ts" else b"nan") for k, v in good],
        [(k, v if k != "snr_db" else b"1e308") for k, v in good],
        [(k, v if k != "frame_id" else b"a\nb") for k, v in good],
        [(k, v if k != "schema" else b"1" * 400) for k, v in good],
        [("surrogate\udcff", b"x"), *good],
        [(1, b"x"), *good],
        [("frame_id", "not bytes"), *good],
        [("a", b"x")] * 100 + good,
    ):
        with pytest.raises(WireError) as e:
            FrameMeta.from_headers(headers)
        assert reason(e) == "bad_header"
    with pytest.raises(WireError) as e:
        header_map([("only a key",)])  # type: ignore[list-item]
    assert reason(e) == "bad_header"


def test_shape_whose_product_overflows_is_refused_before_allocating():
    head = struct.pack("<4sBBBBf", b"SPLT", 1, 0, 4, 0, 0.0)
    # 2^64 values: np.prod in int64 wraps to 0, which matched an empty payload before
    with pytest.raises(WireError) as e:
        decode_tensor(head + struct.pack("<4I", 1 << 16, 1 << 16, 1 << 16, 1 << 16))
    assert reason(e) == "bad_shape"
    with pytest.raises(WireError) as e:
        decode_tensor(head + struct.pack("<4I", 4096, 4096, 4096, 1))
    assert reason(e) == "bad_shape"
    with pytest.raises(WireError) as e:
        decode_tensor(head + struct.pack("<4I", 0, 3, 3, 3))
    assert reason(e) == "bad_shape"
    five = struct.pack("<4sBBBBf", b"SPLT", 1, 0, 5, 0, 0.0) + struct.pack("<5I", *[1] * 5)
    with pytest.raises(WireError) as e:
        decode_tensor(five + b"\0" * 4)
    assert reason(e) == "bad_header"


def test_features_beyond_fp16_range_are_refused():
    x = np.zeros((16, 8, 8), np.float32)
    x[0, 0, 0] = 3e38  # finite in float32; inf after the next convolution
    with pytest.raises(WireError) as e:
        decode_tensor(encode_tensor(x))
    assert reason(e) == "out_of_range"
    x[0, 0, 0] = 60000.0
    assert decode_tensor(encode_tensor(x, "float16")).max() == 60000.0
    assert decode_tensor(encode_tensor(x), max_abs=1e5).max() == 60000.0
    for big, why in ((1e5, "out_of_range"), (1e7, "bad_scale")):  # int8: q · scale
        x[0, 0, 0] = big
        with pytest.raises(WireError) as e:
            decode_tensor(encode_tensor(x, "int8"))
        assert reason(e) == why


def png_header(width: int, height: int) -> bytes:
    """A PNG that announces width x height pixels (signature, IHDR, a tiny IDAT, IEND)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def jpeg_announcing(width: int, height: int) -> bytes:
    """A valid 32x32 JPEG whose SOF0 header is patched to announce width x height."""
    data = bytearray(encode_jpeg(np.zeros((32, 32, 3), np.uint8)))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def test_frames_other_than_small_jpegs_are_refused():
    with pytest.raises(CorruptFrameError) as e:
        decode_jpeg(png_header(20000, 10000))  # the 20000x10000 px PNG: no JPEG marker
    assert reason(e) == "corrupt_jpeg"
    with pytest.raises(CorruptFrameError) as e:
        decode_jpeg(jpeg_announcing(20000, 10000))  # refused from its header, not decoded
    assert reason(e) == "frame_too_large"
    with pytest.raises(CorruptFrameError) as e:
        decode_jpeg(jpeg_announcing(64, 64), max_pixels=1000)
    assert reason(e) == "frame_too_large"
    with pytest.raises(CorruptFrameError) as e:
        decode_jpeg(encode_jpeg(np.zeros((48, 48, 3), np.uint8)))
    assert reason(e) == "wrong_shape" and "shape" in str(e.value)
    assert decode_jpeg(encode_jpeg(np.full((32, 32, 3), 7, np.uint8))).shape == (32, 32, 3)


def test_dead_letter_of_a_frame_at_the_size_limit_fits_the_limit():
    limit = 16 * 1024 * 1024
    frame = FrameMeta("cam-1:t:1", "cam-1", 1.7e9).headers()
    value = b"\xff\xd8\xff" + b"\0" * (16_777_016 - 3)
    key, out, h = dlq_record(
        "oversized", "frame of 16777016 bytes > 1048576", "frames", 3, 42, b"cam-1", value,
        frame, limit,
    )  # fmt: skip
    assert DefaultRecordBatchBuilder.estimate_size_in_bytes(key, out, h) <= limit
    hs = dict(h)
    assert hs["dlq_truncated"] == b"16777016" and hs["dlq_reason"] == b"oversized"
    assert hs["frame_id"] == b"cam-1:t:1" and out == value[: len(out)]
    # a small record is copied whole
    key, out, h = dlq_record("corrupt_jpeg", "x", "frames", 0, 1, b"k", b"abc", frame, limit)
    assert out == b"abc" and "dlq_truncated" not in dict(h)
    # headers so large that even they do not fit are dropped, then the key is cut
    huge = [("big", b"\0" * limit)]
    key, out, h = dlq_record("oversized", "x", "frames", 0, 1, b"k" * limit, b"v", huge, limit)
    assert DefaultRecordBatchBuilder.estimate_size_in_bytes(key, out, h) <= limit
    assert dict(h)["dlq_headers_dropped"] == b"1" and len(key) == 1024


def test_dead_letter_headers_never_raise():
    h = dlq_headers("bad_header", "d\udcff", "frames", 0, 7, [(b"\xff\xfe", b"v"), ("k", None)])
    keys = [k for k, _ in h]
    assert keys[:2] == ["\\xff\\xfe", "k"] and "dlq_reason" in keys
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in h)


def result(**over) -> bytes:
    r = Result("f1", "cam-1", 3, 0.9, 2, "edge", 1.7e9, 1.7e9 + 0.1, timings={"edge_s": 0.01})
    obj = {**json.loads(r.encode()), **over}
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    "over",
    [
        {"frame_id": ["x"]},
        {"frame_id": ""},
        {"camera_id": "c" * 1000},
        {"prediction": True},
        {"prediction": 10**400},
        {"confidence": 1e300},
        {"arm": -1},
        {"where": "moon"},
        {"cost": -1.0},
        {"timings": {"edge_s": "fast"}},
        {"timings": [1]},
        {"extra": 1},
    ],
)
def test_results_with_wrong_types_are_bad_results(over):
    assert Result.decode(result()).frame_id == "f1"
    with pytest.raises(WireError) as e:
        Result.decode(result(**over))
    assert reason(e) == "bad_result"


def test_result_json_without_nan_nesting_or_bulk():
    for raw, why in (
        (result().replace(b"0.9", b"NaN"), "bad_result"),
        (result().replace(b"0.9", b"Infinity"), "bad_result"),
        (b"[" * 100_000, "oversized"),
        (b"[" * 50_000 + b"]" * 50_000, "oversized"),
        (b'{"v": 1, "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "bad_result"),
        (b"\xff\xfe", "bad_result"),
        (b'{"v": 2}', "unknown_version"),
    ):
        with pytest.raises(WireError) as e:
            Result.decode(raw)
        assert reason(e) == why, raw[:30]


def test_results_readers_skip_and_count_bad_records():
    view = ResultsView()
    for raw in (result(), result(frame_id=["x"]), b"\xff", None, result()):
        view.add(raw)
    assert list(view.results) == ["f1"] and view.duplicates == 1
    assert view.bad == 3 and view.bad_reasons == {"bad_result": 2, "empty": 1}
    st = EvalState(final_cost=2.7, num_arms=EXITS)
    assert st.add_result(result(frame_id=["x"])) is None
    assert st.add_truth("f1", b'{"label": [1]}') is None
    assert st.add_truth("f1", b'{"label": 1e999}') is None
    assert st.bad == 3 and st.bad_reasons == {"bad_result": 1, "bad_truth": 2}


def test_truth_records():
    assert decode_truth(b'{"label": 3, "distortion": "noise:0.1"}')["label"] == 3
    for raw in (None, b"{}", b'{"label": -1}', b'{"label": "3"}', b'{"label": 3, "x": 1}'):
        with pytest.raises(WireError) as e:
            decode_truth(raw)
        assert reason(e) == "bad_truth"
    assert decode_frame_id(b"cam-1:t:1") == "cam-1:t:1"
    for raw in (None, b"\xff", b"", b"a\x00b", b"x" * 1000):
        with pytest.raises(WireError):
            decode_frame_id(raw)


def test_unregistered_reason_is_kept_bounded():
    e = WireError("made_up_reason", "detail")
    assert e.reason == "invalid" and "made_up_reason" in e.detail


def test_camera_labels_from_headers_are_bounded():
    values = {bounded_label(f"cam-{i}", 64, name="test_camera") for i in range(3000)}
    assert len(values) == 65 and OTHER_LABEL in values
    assert bounded_label("cam-1", 64, name="test_camera") == "cam-1"  # still passes
    odd = bounded_label('x"}\n' + "y" * 500, 64, name="test_odd")
    assert len(odd) == 64 and odd.startswith("x___")
    assert bounded_label("global", {"global"}) == "global"
    assert bounded_label("global:cam-9", {"global"}) == OTHER_LABEL
