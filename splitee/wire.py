"""The wire format: versioned binary tensors, frame headers, results and truth. No pickle.

Tensor message (the value of an ``offload`` record), little-endian::

    magic  b"SPLT"        4 bytes
    version u8            = 1
    codec   u8            0 float32, 1 float16, 2 int8 (symmetric, per-tensor scale)
    ndim    u8            1..4
    reserved u8           = 0
    scale   f32           int8 only (value = q · scale); 0 otherwise
    shape   u32 × ndim    each 1..MAX_DIM, product ≤ MAX_ELEMENTS
    payload               prod(shape) × itemsize bytes, exactly

Every record that reaches a worker comes from the network, so every field is validated, with
bounds, before it is used: sizes before parsing, shapes before allocating (Python ints, so no
overflow), numbers for finiteness and range, strings for encoding, length and control
characters, JSON for nesting and schema. Anything wrong raises :class:`WireError` whose
``reason`` is one of :data:`REASONS` (it becomes a dead-letter header and a metric label, so
the set is closed) and whose ``detail`` says what was wrong. Results and truth are small
versioned JSON objects with a fixed schema, readable by any sink. Kafka headers are
``(str, bytes)`` pairs; numbers travel as ASCII decimals.

>>> import numpy as np
>>> x = np.arange(6, dtype=np.float32).reshape(2, 3)
>>> bool((decode_tensor(encode_tensor(x)) == x).all())
True
>>> try:
...     decode_tensor(b"nope")
... except WireError as e:
...     print(e.reason)
truncated
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

MAGIC = b"SPLT"
VERSION = 1
SCHEMA_VERSION = 1  # of frame headers and results
CODECS = {"float32": 0, "float16": 1, "int8": 2}
#: Codec of an offload that carries the camera's JPEG itself (the send-frame arm 0).
FRAME_CODEC = "jpeg"
#: Codec of an offload that carries a learned bottleneck's entropy-coded latent.
LATENT_CODEC = "latent"
_CODEC_DTYPE = {0: np.dtype("<f4"), 1: np.dtype("<f2"), 2: np.dtype("i1")}
_HEAD = struct.Struct("<4sBBBBf")
MAX_NDIM = 4  # (N,) C, H, W
MAX_DIM = 4096
MAX_ELEMENTS = 1 << 24  # 16 Mi values: one int8 tensor as large as a Kafka message
#: Largest |feature| accepted: the float16 range. See :func:`decode_tensor`.
FP16_MAX = 65504.0

MAX_HEADERS = 64
MAX_ID_CHARS = 256  # frame ids (replays prefix them), policy keys
MAX_NAME_CHARS = 128  # camera, run, worker ids
MAX_NUMBER_CHARS = 32  # one number in a header or a confidences list
MAX_EXITS = 64
MAX_PAIRS = 1 << 16
MAX_FRAME_BYTES = 1 << 30  # a camera frame's size as a header claims it (a Kafka record's cap)
MAX_CONFIDENCES_BYTES = MAX_EXITS * (MAX_NUMBER_CHARS + 1) + 2
MAX_RESULT_BYTES = 64 * 1024
MAX_TRUTH_BYTES = 4 * 1024
MAX_TIMINGS = 32
MAX_LABEL = 1 << 16  # class indices (CIFAR-10 has 10)

#: Every reason a WireError may carry (dead-letter header ``dlq_reason``, metric label).
REASONS = frozenset(
    {
        # tensors
        "truncated",
        "bad_magic",
        "unknown_version",
        "bad_codec",
        "bad_shape",
        "size_mismatch",
        "bad_scale",
        "not_finite",
        "out_of_range",
        "oversized",
        # entropy-coded latents (learned bottlenecks)
        "bad_latent",
        # headers and offload metadata
        "bad_header",
        "missing_header",
        "bad_confidences",
        "bad_arm",
        "bad_pair",
        "bad_alpha",
        "bad_policy",
        # records, frames, results, truth
        "empty",
        "corrupt_jpeg",
        "wrong_shape",
        "frame_too_large",
        "bad_aspect",  # a frame more elongated than edge.max_aspect
        "future_capture_ts",  # capture_ts ahead of the record's Kafka timestamp
        "bad_result",
        "bad_truth",
        "corrupt_record",
        "processing_error",  # a record whose step raised unexpectedly (splitee.worker.runtime)
        # a reason not in this set (a programming error), kept bounded
        "invalid",
    }
)


class WireError(ValueError):
    """A message that cannot be used; ``reason`` is one of :data:`REASONS`.

    An unregistered reason becomes ``invalid`` (with the name in the detail) rather than an
    error, so that a metric label or dead-letter header can never take unbounded values.
    """

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            detail = f"(unregistered reason {reason[:40]!r}) {detail}"
            reason = "invalid"
        super().__init__(f"[{reason}] {detail}")
        self.reason = reason
        self.detail = detail


def _show(raw: bytes | str, n: int = 40) -> str:
    """A short, printable excerpt of a bad value for an error detail."""
    return repr(raw[:n]) + ("…" if len(raw) > n else "")


# --------------------------------------------------------------------------- tensors
def encode_tensor(x: np.ndarray, codec: str = "float32") -> bytes:
    """Encode an array with the given codec (float32, float16, or int8 with a scale)."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {sorted(CODECS)}")
    x = np.asarray(x)
    if not 1 <= x.ndim <= MAX_NDIM:
        raise ValueError(f"tensor must have 1..{MAX_NDIM} dims, got {x.ndim}")
    code = CODECS[codec]
    scale = 0.0
    if codec == "int8":
        amax = float(np.abs(x).max(initial=0.0))
        scale = amax / 127.0 if amax > 0 else 1.0
        payload = np.clip(np.rint(x / scale), -127, 127).astype(np.int8)
    else:
        payload = x.astype(_CODEC_DTYPE[code], copy=False)  # no copy when already cast
    head = _HEAD.pack(MAGIC, VERSION, code, x.ndim, 0, scale)
    shape = struct.pack(f"<{x.ndim}I", *x.shape)
    return head + shape + np.ascontiguousarray(payload).tobytes()


def decode_tensor(
    data: bytes, max_bytes: int | None = None, max_abs: float = FP16_MAX
) -> np.ndarray:
    """Decode a tensor message into float32, checking every field; raises WireError.

    The shape is bounded (ndim, each dim, their product — computed with Python ints, so a
    crafted shape cannot overflow into a matching size) before anything is allocated, and the
    payload must have exactly that many values. Decoded values must be finite and at most
    ``max_abs`` in magnitude: the edge sends intermediate features of a trained network
    (batch-normalised activations of order 1-100), and the default codec is float16, whose
    largest value is 65504. A finite float32 such as 3e38 passes a plain finiteness check but
    overflows to inf/NaN in the next convolution and then poisons the policy's rewards, so such
    records are refused here (``out_of_range``) with the NaN/inf ones (``not_finite``).
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise WireError("oversized", f"tensor message of {len(data)} bytes > limit {max_bytes}")
    if len(data) < _HEAD.size:
        raise WireError(
            "truncated",
            f"tensor message of {len(data)} bytes is shorter than its {_HEAD.size}-byte header",
        )
    magic, version, code, ndim, reserved, scale = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise WireError("bad_magic", f"magic {magic!r} is not {MAGIC!r}")
    if version != VERSION:
        raise WireError("unknown_version", f"tensor format version {version}, expected {VERSION}")
    if code not in _CODEC_DTYPE:
        raise WireError("bad_codec", f"codec {code} is not one of {sorted(_CODEC_DTYPE)}")
    if not 1 <= ndim <= MAX_NDIM or reserved != 0:
        raise WireError("bad_header", f"ndim {ndim} / reserved {reserved} out of range")
    off = _HEAD.size + 4 * ndim
    if len(data) < off:
        raise WireError("truncated", "tensor message ends inside its shape")
    shape = struct.unpack_from(f"<{ndim}I", data, _HEAD.size)
    if not all(1 <= d <= MAX_DIM for d in shape):
        raise WireError("bad_shape", f"shape {shape}: every dim must be in 1..{MAX_DIM}")
    count = math.prod(shape)  # Python ints: exact
    if count > MAX_ELEMENTS:
        raise WireError("bad_shape", f"shape {shape} holds {count} values > {MAX_ELEMENTS}")
    dtype = _CODEC_DTYPE[code]
    expect = count * dtype.itemsize
    if len(data) - off != expect:
        raise WireError(
            "size_mismatch",
            f"payload of {len(data) - off} bytes does not match shape {shape} ({expect} bytes)",
        )
    if code == 2 and not (math.isfinite(scale) and 0 < scale <= max_abs):
        raise WireError("bad_scale", f"int8 scale {scale} must be finite and in (0, {max_abs}]")
    arr = np.frombuffer(data, dtype=dtype, offset=off).reshape(shape)
    out = arr.astype(np.float32) * np.float32(scale) if code == 2 else arr.astype(np.float32)
    if not (np.abs(out) <= max_abs).all():  # False for NaN too
        if not np.isfinite(out).all():
            raise WireError("not_finite", "tensor holds NaN or infinity")
        big = float(np.abs(out).max())
        raise WireError("out_of_range", f"tensor holds |x| = {big:.3g} > {max_abs:g}")
    return out


# --------------------------------------------------------------------------- latents
#: Latent message (the value of an offload record with codec ``latent``), little-endian::
#:
#:     magic   b"SPLZ"   4 bytes
#:     version u8        = 1
#:     rate    u8        rate point of the arm's codec (index into its tables)
#:     reserved u16      = 0
#:     shape   u32 × 3   (C, H, W) of the latent: must be the model's for the arm
#:     payload           ANS words (a multiple of 4 bytes), at most 2 bytes per symbol + 8
LATENT_MAGIC = b"SPLZ"
_LATENT_HEAD = struct.Struct("<4sBBH3I")
#: Bytes of a latent message before its ANS words (what the wire adds to a coded latent).
LATENT_HEADER_BYTES = _LATENT_HEAD.size


def encode_latent(payload: bytes, shape: Sequence[int], rate: int) -> bytes:
    """Frame an entropy-coded latent with its header."""
    if len(shape) != 3 or not 0 <= rate < 256:
        raise ValueError(f"latent shape {tuple(shape)} / rate {rate} out of range")
    return _LATENT_HEAD.pack(LATENT_MAGIC, VERSION, rate, 0, *shape) + payload


def decode_latent_header(data: bytes, shape: Sequence[int], rates: int) -> tuple[int, memoryview]:
    """Check a latent message against the model's latent ``shape`` for its arm and the arm's
    rate count; returns (rate, payload). Bounds come first: the payload may hold at most
    two bytes per symbol (the tables' 16-bit precision bounds any symbol's code length) plus
    one ANS state, so a decoder never works on more than the latent's worth of input."""
    if len(data) < _LATENT_HEAD.size:
        raise WireError("truncated", f"latent message of {len(data)} bytes has no header")
    magic, version, rate, reserved, *got = _LATENT_HEAD.unpack_from(data)
    if magic != LATENT_MAGIC:
        raise WireError("bad_magic", f"magic {magic!r} is not {LATENT_MAGIC!r}")
    if version != VERSION:
        raise WireError("unknown_version", f"latent format version {version}, expected {VERSION}")
    if reserved != 0 or not 0 <= rate < rates:
        raise WireError("bad_latent", f"rate {rate} not in 0..{rates - 1} (reserved {reserved})")
    if tuple(got) != tuple(shape):
        raise WireError("bad_shape", f"latent shape {tuple(got)} is not the model's {tuple(shape)}")
    payload = memoryview(data)[_LATENT_HEAD.size :]
    limit = 2 * math.prod(shape) + 8
    if len(payload) > limit or len(payload) % 4:
        raise WireError(
            "size_mismatch", f"latent payload of {len(payload)} bytes (whole words, ≤ {limit})"
        )
    return rate, payload


# --------------------------------------------------------------------------- headers
Headers = list[tuple[str, bytes]]


def make_headers(fields: Mapping[str, object]) -> Headers:
    """Kafka headers from a mapping: str as UTF-8, numbers as ASCII, sequences as JSON."""
    out: Headers = []
    for k, v in fields.items():
        if v is None:
            continue
        if isinstance(v, bytes):
            b = v
        elif isinstance(v, str):
            b = v.encode()
        elif isinstance(v, (list, tuple)):
            b = json.dumps(list(v), separators=(",", ":")).encode()
        else:
            b = repr(v).encode() if isinstance(v, float) else str(v).encode()
        out.append((k, b))
    return out


def _header_key(k: object) -> str:
    if isinstance(k, (bytes, bytearray, memoryview)):
        try:
            return bytes(k).decode("utf-8")
        except UnicodeDecodeError:
            raise WireError("bad_header", f"header key {_show(bytes(k))} is not UTF-8") from None
    if not isinstance(k, str):
        raise WireError("bad_header", f"header key of type {type(k).__name__}")
    try:
        k.encode("utf-8")  # lone surrogates (bytes decoded with surrogateescape)
    except UnicodeEncodeError:
        raise WireError("bad_header", f"header key {_show(k)} is not UTF-8") from None
    return k


def _header_value(k: str, v: object) -> bytes:
    if v is None:
        return b""
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    raise WireError("bad_header", f"header {k!r} has a value of type {type(v).__name__}")


def header_map(
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
) -> dict[str, bytes]:
    """Headers as a dict (the last of repeated keys wins). Keys may come as str or bytes in any
    encoding; a key that is not UTF-8, a malformed pair or too many headers is a WireError."""
    if headers is None:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, bytes] = {}
    try:
        for n, item in enumerate(items):
            if n >= MAX_HEADERS:
                raise WireError("bad_header", f"more than {MAX_HEADERS} headers")
            k, v = item
            key = _header_key(k)
            out[key] = _header_value(key, v)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, WireError):
            raise
        raise WireError("bad_header", f"headers are not (key, value) pairs: {exc}") from None
    return out


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_INT = re.compile(rb"-?[0-9]{1,18}")


def _text(h: Mapping[str, bytes], name: str, limit: int, required: bool = True) -> str:
    """A UTF-8 header of 1..limit characters without control characters."""
    if name not in h:
        if required:
            raise WireError("missing_header", f"record has no {name!r} header")
        return ""
    raw = h[name]
    if len(raw) > 4 * limit:
        raise WireError("bad_header", f"header {name!r} of {len(raw)} bytes is too long")
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("bad_header", f"header {name!r} {_show(raw)} is not UTF-8") from None
    if len(s) > limit or (required and not s):
        raise WireError("bad_header", f"header {name!r} must have 1..{limit} characters")
    if _CONTROL.search(s):
        raise WireError("bad_header", f"header {name!r} {_show(s)} has control characters")
    return s


def _int(raw: bytes, name: str) -> int:
    if not _INT.fullmatch(raw):
        raise WireError("bad_header", f"header {name!r} {_show(raw)} is not a decimal integer")
    return int(raw)


def _float(raw: bytes, name: str, bound: float) -> float:
    """A finite float of magnitude ≤ bound from an ASCII header."""
    if len(raw) > MAX_NUMBER_CHARS:
        raise WireError("bad_header", f"header {name!r} {_show(raw)} is too long for a number")
    try:
        v = float(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise WireError("bad_header", f"header {name!r} {_show(raw)} is not a number") from None
    if not (math.isfinite(v) and abs(v) <= bound):
        raise WireError("bad_header", f"header {name!r} = {v} is not finite within ±{bound:g}")
    return v


def _required(h: Mapping[str, bytes], name: str) -> bytes:
    try:
        return h[name]
    except KeyError:
        raise WireError("missing_header", f"record has no {name!r} header") from None


_TS_BOUND = 1e12  # seconds since the epoch: year 33658
_SNR_BOUND = 1000.0  # dB


@dataclass(frozen=True)
class FrameMeta:
    """What travels with a frame through every topic (headers ``frame_id`` … ``schema``)."""

    frame_id: str
    camera_id: str
    capture_ts: float
    schema: int = SCHEMA_VERSION
    run_id: str = ""
    snr_db: float | None = None

    def headers(self) -> Headers:
        return make_headers(
            {
                "frame_id": self.frame_id,
                "camera_id": self.camera_id,
                "capture_ts": self.capture_ts,
                "schema": self.schema,
                "run_id": self.run_id or None,
                "snr_db": self.snr_db,
            }
        )

    @classmethod
    def from_headers(
        cls, headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None
    ) -> FrameMeta:
        """Parse and validate a frame's headers (ids bounded, timestamps and SNR finite)."""
        h = header_map(headers)
        schema = _int(_required(h, "schema"), "schema")
        if schema != SCHEMA_VERSION:
            raise WireError(
                "unknown_version", f"schema version {schema}, expected {SCHEMA_VERSION}"
            )
        snr = h.get("snr_db")
        return cls(
            frame_id=_text(h, "frame_id", MAX_ID_CHARS),
            camera_id=_text(h, "camera_id", MAX_NAME_CHARS),
            capture_ts=_float(_required(h, "capture_ts"), "capture_ts", _TS_BOUND),
            schema=schema,
            run_id=_text(h, "run_id", MAX_NAME_CHARS, required=False),
            snr_db=_float(snr, "snr_db", _SNR_BOUND) if snr else None,
        )


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _bounded_number(text: str) -> float:
    """json.loads hook for ints and floats: refuse long texts before converting them."""
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"number of {len(text)} characters")
    return float(text)


def parse_confidences(raw: bytes, exits: int | None) -> list[float | None]:
    """The ``confidences`` header: a flat JSON list of null or finite numbers in [0, 1].

    Its size is bounded before parsing and it may contain exactly one ``[`` (no nesting, so no
    deep recursion); numbers longer than MAX_NUMBER_CHARS, NaN and Infinity are refused. With
    ``exits`` the list must have one entry per exit of the model.
    """
    if len(raw) > MAX_CONFIDENCES_BYTES:
        raise WireError("bad_confidences", f"confidences of {len(raw)} bytes is too long")
    if raw.count(b"[") != 1 or b"{" in raw:
        raise WireError("bad_confidences", f"confidences {_show(raw)} is not a flat JSON list")
    try:
        conf = json.loads(
            raw,
            parse_constant=_reject_constant,
            parse_int=_bounded_number,
            parse_float=_bounded_number,
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError("bad_confidences", f"confidences {_show(raw)}: {exc}") from None
    if not isinstance(conf, list) or not 1 <= len(conf) <= MAX_EXITS:
        raise WireError("bad_confidences", f"confidences {_show(raw)} is not a list of 1..64")
    if exits is not None and len(conf) != exits:
        raise WireError("bad_confidences", f"{len(conf)} confidences for a {exits}-exit model")
    for c in conf:
        if c is not None and not (isinstance(c, float) and 0.0 <= c <= 1.0):
            raise WireError("bad_confidences", f"confidence {c!r} is not null or in [0, 1]")
    return conf


@dataclass(frozen=True, kw_only=True)
class OffloadMeta:
    """Offload headers beyond the frame's: arm, exit confidences so far, codec, policy key.

    Built by keyword: ten fields, several of one type (three optional numbers, two strings)."""

    arm: int
    confidences: Sequence[float | None]
    codec: str
    policy: str
    edge_ts: float
    edge_worker: str = ""
    pair: int | None = None  # the bandit's (arm, α) pair index, with threshold adaptation
    alpha: float | None = None  # that pair's threshold
    by_td: bool = False  # a transmission decision (not C ≥ α) sent the frame
    frame_bytes: int | None = None  # the camera JPEG's size: prices the send-frame arm's reward

    def headers(self) -> Headers:
        conf = [None if c is None or c != c else round(float(c), 6) for c in self.confidences]
        return make_headers(
            {
                "arm": self.arm,
                "confidences": conf,
                "codec": self.codec,
                "policy": self.policy,
                "edge_ts": self.edge_ts,
                "edge_worker": self.edge_worker,
                "pair": self.pair,
                "alpha": self.alpha,
                "td": 1 if self.by_td else None,
                "frame_bytes": self.frame_bytes,
            }
        )

    @classmethod
    def from_headers(
        cls,
        headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
        exits: int | None = None,
        pairs: int | None = None,
    ) -> OffloadMeta:
        """Parse and validate offload headers against the model and the policy.

        ``exits`` (the model's exit count L): the arm must be one that offloads (0..L-2),
        ``confidences`` must have L entries. ``pairs`` (the bandit's arm count, L × the α grid
        with threshold adaptation): ``pair`` must be below it and name the record's arm
        (``pair % L == arm``). ``pair`` and ``alpha`` come together or not at all. Without
        ``exits``/``pairs`` only the format's own bounds apply (MAX_EXITS, MAX_PAIRS).
        """
        h = header_map(headers)
        arm = _int(_required(h, "arm"), "arm")
        last = (exits if exits is not None else MAX_EXITS) - 1
        if not 0 <= arm < last:
            raise WireError("bad_arm", f"arm {arm} cannot be offloaded (0..{last - 1})")
        conf = parse_confidences(_required(h, "confidences"), exits)
        if arm >= len(conf) or conf[arm] is None:
            raise WireError("bad_confidences", f"no confidence for the offloaded arm {arm}")
        codec = _text(h, "codec", 16)
        if codec not in CODECS and codec not in (FRAME_CODEC, LATENT_CODEC):
            raise WireError("bad_codec", f"codec {_show(codec)} is not one of {sorted(CODECS)}")
        pair = _int(h["pair"], "pair") if h.get("pair") else None
        alpha = _float(h["alpha"], "alpha", _TS_BOUND) if h.get("alpha") else None
        if (pair is None) != (alpha is None):
            raise WireError("bad_pair", "headers pair and alpha come together or not at all")
        if pair is not None:
            limit = pairs if pairs is not None else MAX_PAIRS
            if not 0 <= pair < limit:
                raise WireError("bad_pair", f"pair {pair} out of range 0..{limit - 1}")
            if exits is not None and pair % exits != arm:
                raise WireError("bad_pair", f"pair {pair} is not one of arm {arm}'s")
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise WireError("bad_alpha", f"alpha {alpha} is not in [0, 1]")
        td = h.get("td", b"0")
        if td not in (b"0", b"1"):
            raise WireError("bad_header", f"header 'td' {_show(td)} is not 0 or 1")
        frame_bytes = _int(h["frame_bytes"], "frame_bytes") if h.get("frame_bytes") else None
        if frame_bytes is not None and not 0 < frame_bytes <= MAX_FRAME_BYTES:
            raise WireError("bad_header", f"frame_bytes {frame_bytes} not in 1..{MAX_FRAME_BYTES}")
        return cls(
            arm=arm,
            confidences=conf,
            codec=codec,
            policy=_text(h, "policy", MAX_ID_CHARS),
            edge_ts=_float(_required(h, "edge_ts"), "edge_ts", _TS_BOUND),
            edge_worker=_text(h, "edge_worker", MAX_NAME_CHARS, required=False),
            pair=pair,
            alpha=alpha,
            by_td=td == b"1",
            frame_bytes=frame_bytes,
        )


# --------------------------------------------------------------------------- JSON records
def _loads(data: bytes, reason: str, what: str, max_bytes: int) -> object:
    """Parse bounded JSON without NaN/Infinity; any failure is WireError(reason)."""
    if len(data) > max_bytes:
        raise WireError("oversized", f"{what} of {len(data)} bytes > limit {max_bytes}")
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise WireError(reason, f"{what} is not JSON: {str(exc)[:200]}") from None


def _check_str(v: object, limit: int, allow_empty: bool) -> bool:
    return (
        isinstance(v, str)
        and (allow_empty or bool(v))
        and len(v) <= limit
        and not _CONTROL.search(v)
    )


def _check_int(v: object, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _check_float(v: object, lo: float, hi: float) -> bool:
    return (
        isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        and lo <= v <= hi
    )


def _check_timings(v: object) -> bool:
    return (
        isinstance(v, dict)
        and len(v) <= MAX_TIMINGS
        and all(_check_str(k, 64, False) and _check_float(t, 0, 1e6) for k, t in v.items())
    )


# field → (check, required); the schema of a result, version 1
_RESULT_SCHEMA = {
    "frame_id": (lambda v: _check_str(v, MAX_ID_CHARS, False), True),
    "camera_id": (lambda v: _check_str(v, MAX_NAME_CHARS, False), True),
    "prediction": (lambda v: _check_int(v, 0, MAX_LABEL - 1), True),
    "confidence": (lambda v: _check_float(v, 0.0, 1.0), True),
    "arm": (lambda v: _check_int(v, 0, MAX_EXITS - 1), True),
    "where": (lambda v: v in ("edge", "cloud"), True),
    "capture_ts": (lambda v: _check_float(v, -_TS_BOUND, _TS_BOUND), True),
    "done_ts": (lambda v: _check_float(v, -_TS_BOUND, _TS_BOUND), True),
    "policy": (lambda v: _check_str(v, MAX_ID_CHARS, True), False),
    "run_id": (lambda v: _check_str(v, MAX_NAME_CHARS, True), False),
    "offload_bytes": (lambda v: _check_int(v, 0, 1 << 40), False),
    "cost": (lambda v: _check_float(v, 0.0, 1e6), False),
    "timings": (_check_timings, False),
    "v": (lambda v: v == SCHEMA_VERSION, True),
}


def _check_schema(obj: object, schema: dict, reason: str, what: str) -> dict:
    if not isinstance(obj, dict):
        raise WireError(reason, f"{what} is not a JSON object")
    extra = set(obj) - set(schema)
    if extra:
        raise WireError(reason, f"{what} has unknown fields {sorted(extra)[:5]}")
    for name, (check, required) in schema.items():
        if name not in obj:
            if required:
                raise WireError(reason, f"{what} has no {name!r}")
            continue
        if not check(obj[name]):
            raise WireError(reason, f"{what} field {name!r} = {_show(repr(obj[name]))} is invalid")
    return obj


@dataclass
class Result:
    """One frame's answer. ``where`` is "edge" (exited at ``arm``) or "cloud" (offloaded)."""

    frame_id: str
    camera_id: str
    prediction: int
    confidence: float
    arm: int
    where: str
    capture_ts: float
    done_ts: float
    policy: str = ""
    run_id: str = ""
    offload_bytes: int = 0
    cost: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    v: int = SCHEMA_VERSION

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes, max_bytes: int = MAX_RESULT_BYTES) -> Result:
        """Parse a result, checking its size, version and the type and range of every field."""
        obj = _loads(data, "bad_result", "result", max_bytes)
        if isinstance(obj, dict) and obj.get("v") != SCHEMA_VERSION:
            raise WireError("unknown_version", f"result version {_show(repr(obj.get('v')))}")
        return cls(**_check_schema(obj, _RESULT_SCHEMA, "bad_result", "result"))


_TRUTH_SCHEMA = {
    "label": (lambda v: _check_int(v, 0, MAX_LABEL - 1), True),
    "camera_id": (lambda v: _check_str(v, MAX_NAME_CHARS, True), False),
    "distortion": (lambda v: _check_str(v, 64, True), False),
    "index": (lambda v: _check_int(v, 0, 1 << 40), False),
    "run_id": (lambda v: _check_str(v, MAX_NAME_CHARS, True), False),
    "jpeg_bytes": (lambda v: _check_int(v, 0, 1 << 40), False),
}


def decode_truth(data: bytes | None) -> dict:
    """A ``truth`` record's value: ``{"label": int, "camera_id", "distortion", "index",
    "run_id", "jpeg_bytes"}`` (only ``label`` required; ``jpeg_bytes`` is the size of the JPEG the
    camera sent, for the run summary's bytes), size, types and ranges checked; WireError
    ``bad_truth`` otherwise."""
    if data is None:
        raise WireError("bad_truth", "truth record has no value")
    obj = _loads(data, "bad_truth", "truth", MAX_TRUTH_BYTES)
    return _check_schema(obj, _TRUTH_SCHEMA, "bad_truth", "truth")


def decode_frame_id(raw: bytes | None, reason: str = "bad_truth") -> str:
    """A frame id from a record key (truth records are keyed by it): UTF-8, bounded, printable."""
    if raw is None:
        raise WireError(reason, "record has no key (its frame id)")
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError(reason, f"frame id {_show(raw)} is not UTF-8") from None
    if not _check_str(s, MAX_ID_CHARS, False):
        raise WireError(reason, f"frame id {_show(s)} is empty, too long or has control chars")
    return s
