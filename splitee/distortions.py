"""Image distortions shared by producers (live streams) and the offline evaluator.

Every distortion maps a batch of uint8 NHWC RGB frames to a new uint8 batch and is
deterministic for a given seed. Levels:

* ``noise:σ``       additive Gaussian noise, σ on the [0, 1] intensity scale
* ``blur:σ``        Gaussian blur, σ in pixels (separable kernel of radius ⌈3σ⌉, reflect edges)
* ``brightness:f``  multiply intensities by f (f < 1 is darker: night, f > 1 brighter)
* ``contrast:c``    scale around each frame's mean by c (c < 1 is flatter: fog, haze)
* ``jpeg:q``        re-compress with JPEG quality q (1..95)
* ``pristine``      unchanged

>>> d = Distortion.parse("noise:0.1")
>>> d.kind, d.level, str(d)
('noise', 0.1, 'noise:0.1')
>>> import numpy as np
>>> x = np.full((2, 32, 32, 3), 128, np.uint8)
>>> bool((d.apply(x, seed=1) == d.apply(x, seed=1)).all())
True
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: Frames distorted per step: the noise stream is drawn in order, so chunks give exactly the
#: numbers one big batch would, with float32 temporaries of a chunk's size (a few hundred MB
#: for 224×224 frames instead of several GB).
CHUNK = 256
KINDS = ("pristine", "noise", "blur", "brightness", "contrast", "jpeg")
#: The I-SplitEE evaluation settings: pristine, Gaussian noise and Gaussian blur levels.
EVAL_DISTORTIONS = (
    "pristine",
    "noise:0.05",
    "noise:0.1",
    "noise:0.2",
    "blur:0.5",
    "blur:1.0",
    "blur:1.5",
)


@dataclass(frozen=True)
class Distortion:
    kind: str = "pristine"
    level: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown distortion {self.kind!r}; expected one of {KINDS}")
        if self.kind in ("noise", "blur") and self.level < 0:
            raise ValueError(f"{self.kind} level must be >= 0, got {self.level}")
        if self.kind in ("brightness", "contrast") and self.level < 0:
            raise ValueError(f"{self.kind} factor must be >= 0, got {self.level}")
        if self.kind == "jpeg" and not 1 <= self.level <= 95:
            raise ValueError(f"jpeg quality must be in 1..95, got {self.level}")

    @classmethod
    def parse(cls, spec: str) -> Distortion:
        """Parse ``kind:level`` (or ``pristine``)."""
        spec = spec.strip()
        if spec in ("pristine", "", "none"):
            return cls()
        kind, sep, level = spec.partition(":")
        if not sep:
            raise ValueError(f"distortion {spec!r} must look like kind:level, e.g. noise:0.1")
        try:
            return cls(kind, float(level))
        except ValueError as exc:
            raise ValueError(f"bad distortion {spec!r}: {exc}") from exc

    def __str__(self) -> str:
        return "pristine" if self.kind == "pristine" else f"{self.kind}:{self.level:g}"

    def apply(self, images: np.ndarray, seed: int = 0) -> np.ndarray:
        """Distort a uint8 NHWC batch (or one HWC frame); returns a new uint8 array."""
        single = images.ndim == 3
        x = images[None] if single else images
        if x.dtype != np.uint8 or x.shape[-1] != 3:
            raise ValueError(f"expected uint8 (N,H,W,3) frames, got {x.dtype} {x.shape}")
        rng = np.random.default_rng(seed)
        fn = _APPLY[self.kind]
        if len(x) <= CHUNK:
            out = fn(x, self.level, rng)
        else:  # bounded float32 temporaries for real-size frames; the same numbers
            out = np.concatenate(
                [fn(x[i : i + CHUNK], self.level, rng) for i in range(0, len(x), CHUNK)]
            )
        return out[0] if single else out


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _pristine(x: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    return x.copy()


def _noise(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(x.shape, dtype=np.float32) * (sigma * 255.0)
    return _to_u8(x.astype(np.float32) + noise)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian taps of radius ⌈3σ⌉."""
    radius = max(1, math.ceil(3 * sigma))
    t = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _blur(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    if sigma <= 0:
        return x.copy()
    k = gaussian_kernel(sigma)
    r = len(k) // 2
    out = x.astype(np.float32)
    for axis in (1, 2):  # H then W
        pad = [(0, 0)] * 4
        pad[axis] = (r, r)
        p = np.pad(out, pad, mode="reflect")
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for i, w in enumerate(k):
            acc += w * np.take(p, np.arange(i, i + n), axis=axis)
        out = acc
    return _to_u8(out)


def _brightness(x: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    return _to_u8(x.astype(np.float32) * factor)


def _contrast(x: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    f = x.astype(np.float32)
    mean = f.mean(axis=(1, 2, 3), keepdims=True)
    return _to_u8((f - mean) * factor + mean)


def _jpeg(x: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    out = np.empty_like(x)
    for i, img in enumerate(x):
        buf = io.BytesIO()
        Image.fromarray(img, "RGB").save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        out[i] = np.asarray(Image.open(buf).convert("RGB"))
    return out


_APPLY = {
    "pristine": _pristine,
    "noise": _noise,
    "blur": _blur,
    "brightness": _brightness,
    "contrast": _contrast,
    "jpeg": _jpeg,
}
