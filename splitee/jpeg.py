"""JPEG frames as they arrive from a camera: checked from the header, decoded, encoded.

Every path that turns a frame's bytes into pixels — the edge worker, the cloud's send-the-frame
arm, the dataset readers, replay — goes through :func:`jpeg_size` first, so only JPEG is
accepted and no frame is decoded whose header announces more than ``max_pixels``. Kept apart
from the datasets (:mod:`splitee.data` for CIFAR-10, :mod:`splitee.images` for real-size
frames) because it is what the workers need of them.
"""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image

from splitee.wire import WireError

JPEG_SOI = b"\xff\xd8\xff"
#: Largest frame decode_jpeg decodes (width x height), far above any camera's.
MAX_FRAME_PIXELS = 40_000_000
#: The frames the CIFAR models take (uint8 HWC RGB): what :func:`decode_jpeg` expects by default.
CIFAR_SHAPE = (32, 32, 3)


class CorruptFrameError(WireError):
    """A frame that is not a decodable JPEG of the expected shape (or a corrupt dataset file).

    A :class:`splitee.wire.WireError`, so a worker dead-letters it by ``reason`` like any other
    bad record: ``corrupt_jpeg`` (not a JPEG, or undecodable), ``wrong_shape`` (decodes, but
    not to ``expect_shape``), ``frame_too_large`` (its header announces more pixels than the
    cap) or ``bad_aspect`` (more elongated than the edge accepts); dataset files use the
    default.
    """

    def __init__(self, detail: str, reason: str = "corrupt_jpeg") -> None:
        super().__init__(reason, detail)

    def __str__(self) -> str:
        return self.detail


def jpeg_size(data: bytes, max_pixels: int = MAX_FRAME_PIXELS) -> tuple[int, int]:
    """(height, width) from a JPEG's header, checked before anything is decoded: only JPEG is
    accepted, and at most ``max_pixels`` (a small file may announce a huge image)."""
    if not data.startswith(JPEG_SOI):
        raise CorruptFrameError(f"not a decodable image: no JPEG SOI marker ({data[:4]!r})")
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data, strict=True)
    except ValueError as exc:
        raise CorruptFrameError(f"not a decodable image: {exc}") from None
    if height * width > max_pixels:
        raise CorruptFrameError(
            f"JPEG of {width}x{height} px is above the {max_pixels} px cap", "frame_too_large"
        )
    return height, width


def decode_jpeg(
    data: bytes,
    expect_shape: tuple[int, int, int] = CIFAR_SHAPE,
    max_pixels: int = MAX_FRAME_PIXELS,
) -> np.ndarray:
    """Decode one JPEG frame to uint8 HWC RGB; raise CorruptFrameError with the reason.

    Frames come from the network, so only baseline/progressive JPEG is accepted (the SOI
    marker ``FF D8 FF`` first; no fallback to Pillow's many formats, whose decoders are a much
    larger attack surface), and the width and height in the JPEG header are checked against
    ``max_pixels`` *before* decoding: a 200 kB file may announce 20000x10000 pixels, and
    decoding it would allocate 600 MB. libjpeg-turbo through simplejpeg decodes a 32x32 frame
    about 7x faster than Pillow, with identical pixels.
    """
    jpeg_size(data, max_pixels)
    try:
        arr = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as exc:
        raise CorruptFrameError(f"not a decodable image: {exc}") from None
    if arr.shape != expect_shape:
        raise CorruptFrameError(
            f"frame shape {arr.shape} != expected {expect_shape}", "wrong_shape"
        )
    return arr


def encode_jpeg(image: np.ndarray, quality: int = 75) -> bytes:
    """Encode uint8 HWC RGB as JPEG (4:2:0, like the shipped frames)."""
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="JPEG", quality=quality, subsampling=2)
    return buf.getvalue()
