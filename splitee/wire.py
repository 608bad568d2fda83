"""The wire format: versioned binary tensors, frame headers and results. No pickle anywhere.

Tensor message (the value of an ``offload`` record), little-endian::

    magic  b"SPLT"        4 bytes
    version u8            = 1
    codec   u8            0 float32, 1 float16, 2 int8 (symmetric, per-tensor scale)
    ndim    u8            1..8
    reserved u8           = 0
    scale   f32           int8 only (value = q · scale); 0 otherwise
    shape   u32 × ndim
    payload               prod(shape) × itemsize bytes, exactly

Decoding checks every field and size and raises :class:`WireError` whose ``reason`` is a short
machine-readable code (it becomes the dead-letter header). Results are a small versioned JSON
object (``"v": 1``), readable by any sink. Kafka headers are ``(str, bytes)`` pairs; numbers
travel as ASCII decimals.

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
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

MAGIC = b"SPLT"
VERSION = 1
SCHEMA_VERSION = 1  # of frame headers and results
CODECS = {"float32": 0, "float16": 1, "int8": 2}
_CODEC_DTYPE = {0: np.dtype("<f4"), 1: np.dtype("<f2"), 2: np.dtype("i1")}
_HEAD = struct.Struct("<4sBBBBf")
MAX_NDIM = 8


class WireError(ValueError):
    """A message that cannot be decoded; ``reason`` is a short code for dead-letter headers."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"[{reason}] {detail}")
        self.reason = reason
        self.detail = detail


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


def decode_tensor(data: bytes, max_bytes: int | None = None) -> np.ndarray:
    """Decode a tensor message into float32, checking every field; raises WireError."""
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
    dtype = _CODEC_DTYPE[code]
    expect = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - off != expect:
        raise WireError(
            "size_mismatch",
            f"payload of {len(data) - off} bytes does not match shape {shape} ({expect} bytes)",
        )
    if code == 2 and not (np.isfinite(scale) and scale > 0):
        raise WireError("bad_scale", f"int8 scale {scale} must be finite and positive")
    arr = np.frombuffer(data, dtype=dtype, offset=off).reshape(shape)
    out = arr.astype(np.float32) * np.float32(scale) if code == 2 else arr.astype(np.float32)
    if not np.isfinite(out).all():
        raise WireError("not_finite", "tensor holds NaN or infinity")
    return out


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


def header_map(
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
) -> dict[str, bytes]:
    if headers is None:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {(k.decode() if isinstance(k, bytes) else k): bytes(v or b"") for k, v in items}


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
        h = header_map(headers)
        try:
            schema = int(h["schema"])
        except KeyError:
            raise WireError("missing_header", "frame has no 'schema' header") from None
        except ValueError:
            raise WireError("bad_header", f"schema header {h['schema']!r} is not an int") from None
        if schema != SCHEMA_VERSION:
            raise WireError(
                "unknown_version", f"schema version {schema}, expected {SCHEMA_VERSION}"
            )
        try:
            snr = h.get("snr_db")
            return cls(
                frame_id=h["frame_id"].decode(),
                camera_id=h["camera_id"].decode(),
                capture_ts=float(h["capture_ts"]),
                schema=schema,
                run_id=h.get("run_id", b"").decode(),
                snr_db=float(snr) if snr else None,
            )
        except KeyError as exc:
            raise WireError("missing_header", f"frame has no {exc.args[0]!r} header") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise WireError("bad_header", f"bad frame header: {exc}") from None


@dataclass(frozen=True)
class OffloadMeta:
    """Offload headers beyond the frame's: arm, exit confidences so far, codec, policy key."""

    arm: int
    confidences: Sequence[float | None]
    codec: str
    policy: str
    edge_ts: float
    edge_worker: str = ""
    pair: int | None = None  # the bandit's (arm, α) pair index, with threshold adaptation
    alpha: float | None = None  # that pair's threshold
    by_td: bool = False  # a transmission decision (not C ≥ α) sent the frame

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
            }
        )

    @classmethod
    def from_headers(
        cls, headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None
    ) -> OffloadMeta:
        h = header_map(headers)
        try:
            conf = json.loads(h["confidences"])
            if not isinstance(conf, list):
                raise ValueError("confidences is not a list")
            return cls(
                arm=int(h["arm"]),
                confidences=[None if c is None else float(c) for c in conf],
                codec=h["codec"].decode(),
                policy=h["policy"].decode(),
                edge_ts=float(h["edge_ts"]),
                edge_worker=h.get("edge_worker", b"").decode(),
                pair=int(h["pair"]) if h.get("pair") else None,
                alpha=float(h["alpha"]) if h.get("alpha") else None,
                by_td=h.get("td") == b"1",
            )
        except KeyError as exc:
            raise WireError("missing_header", f"offload has no {exc.args[0]!r} header") from None
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise WireError("bad_header", f"bad offload header: {exc}") from None


# --------------------------------------------------------------------------- results
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
    def decode(cls, data: bytes) -> Result:
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise WireError("bad_result", f"result is not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise WireError("bad_result", "result is not a JSON object")
        if obj.get("v") != SCHEMA_VERSION:
            raise WireError("unknown_version", f"result version {obj.get('v')!r}")
        try:
            return cls(**obj)
        except TypeError as exc:
            raise WireError("bad_result", f"result fields: {exc}") from None
