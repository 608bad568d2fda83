"""Real-size frames: JPEGs of any size decoded and fitted to a model's input; image folders.

A camera sends its JPEG at its own resolution. The edge decodes it — at a reduced DCT scale
when the frame is at least twice the model's input, which libjpeg-turbo (simplejpeg) does for a
fraction of the full decode's cost — then takes the centre square of what resizing the shorter
side to the model's input size (antialiased bilinear) gives; for an elongated frame only that
square is resampled, from its box in source pixels, since resizing the whole frame first would
make a 60000×4 frame a 3.4-gigapixel intermediate. The edge refuses frames more elongated
than ``edge.max_aspect`` from their header (``bad_aspect``). Grey-scale and CMYK JPEGs come out
as RGB.
Training, the offline evaluator and the live edge all call :func:`decode_fit`, so every path
feeds the network the same pixels.

Image sources (labels for evaluation and training only):

* a folder, or a zip, with one sub-folder of JPEGs per class (``<class>/<file>.jpg``, at any
  depth inside the zip): classes are the sorted sub-folder names;
* Caltech-101 (``caltech101-jpeg.zip`` or its extracted folder: ``101_ObjectCategories/`` plus
  ``train.txt``/``test.txt``, the fixed split). ``BACKGROUND_Google`` is dropped, as in the
  usual protocol: it is clutter without an object, not a class, so 101 classes remain.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image

from splitee.data import Dataset
from splitee.jpeg import MAX_FRAME_PIXELS, CorruptFrameError, jpeg_size

CALTECH_ROOT = "101_ObjectCategories"
CALTECH_BACKGROUND = "BACKGROUND_Google"
IMAGE_SUFFIXES = (".jpg", ".jpeg")


#: A whole-frame resize may be at most this many times the crop's pixels; beyond, only the crop
#: is resampled.
WHOLE_RESIZE_FACTOR = 4


def fit(image: np.ndarray, size: int) -> np.ndarray:
    """The centre square of ``image`` with its shorter side resized to ``size`` (antialiased
    bilinear); work and memory O(size²) plus the source's, whatever the aspect ratio.

    Frames up to 4:1 (every real camera's) are resized whole and cropped: bit for bit the pixels
    the shipped models were trained and evaluated on. A more elongated frame would make a huge
    intermediate (60000×4 px: 3.4 gigapixels), so only the crop is resampled, from its box in
    source pixels on the grid the whole resize would use: the same picture up to rounding (at
    most 1 in 8 bits, since the filter positions are then computed from the box's origin).
    """
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    top, left = (nh - size) // 2, (nw - size) // 2
    img = Image.fromarray(image, "RGB")
    if nh * nw <= WHOLE_RESIZE_FACTOR * size * size:
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)
        img = img.crop((left, top, left + size, top + size))
    else:
        box = (left * w / nw, top * h / nh, (left + size) * w / nw, (top + size) * h / nh)
        img = img.resize((size, size), Image.Resampling.BILINEAR, box=box)
    return np.array(img)  # writable, for torch


def check_aspect(height: int, width: int, max_aspect: float | None) -> None:
    """Refuse a frame whose longer side is more than ``max_aspect`` times its shorter one.

    No camera sends 60000×4 px; a frame that thin is a broken or hostile sender, and after the
    centre crop the model would see a few source pixels stretched over its whole input.
    """
    if max_aspect is None:
        return
    if max(height, width) > max_aspect * min(height, width):
        raise CorruptFrameError(
            f"JPEG of {width}x{height} px is more elongated than {max_aspect:g}:1",
            "bad_aspect",
        )


def decode_fit(
    data: bytes, size: int, max_pixels: int = MAX_FRAME_PIXELS, max_aspect: float | None = None
) -> np.ndarray:
    """Decode a JPEG of any size to uint8 (size, size, 3) RGB; CorruptFrameError with a reason.

    The header is read first: more than ``max_pixels`` (``frame_too_large``) or an aspect ratio
    beyond ``max_aspect`` (``bad_aspect``; None: any) is refused before any decoding. Frames at
    least twice the target on both sides are decoded at a reduced DCT scale (1/2, 1/4, 1/8)
    that still covers ``size``.
    """
    check_aspect(*jpeg_size(data, max_pixels), max_aspect)  # only JPEG, bounded, before decoding
    try:
        # min_* lets libjpeg-turbo pick the smallest DCT scale whose output still covers them
        arr = simplejpeg.decode_jpeg(
            data, colorspace="RGB", strict=True, min_height=size, min_width=size
        )
    except ValueError as exc:
        raise CorruptFrameError(f"not a decodable image: {exc}") from None
    return fit(arr, size)


def decode_any(data: bytes, max_pixels: int = MAX_FRAME_PIXELS) -> np.ndarray:
    """Decode a JPEG at its own size to uint8 RGB (cameras distorting their frames)."""
    jpeg_size(data, max_pixels)
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as exc:
        raise CorruptFrameError(f"not a decodable image: {exc}") from None


# --------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class ImageSource:
    """JPEG files with labels: where they are, their class names, and one split's members."""

    path: Path
    classes: tuple[str, ...]
    members: tuple[str, ...]  # zip member names, or paths relative to ``path``
    labels: tuple[int, ...]
    name: str

    def __len__(self) -> int:
        return len(self.members)

    def iter_bytes(self) -> Iterator[tuple[str, bytes, int]]:
        """(member, JPEG bytes as stored, label) in the source's order."""
        if self.path.is_dir():
            for m, y in zip(self.members, self.labels, strict=True):
                yield m, (self.path / m).read_bytes(), y
            return
        with zipfile.ZipFile(self.path) as zf:
            for m, y in zip(self.members, self.labels, strict=True):
                yield m, zf.read(m), y


def _listing(path: Path) -> list[str]:
    if path.is_dir():
        return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    if path.suffix == ".zip" and path.is_file():
        with zipfile.ZipFile(path) as zf:
            return sorted(n for n in zf.namelist() if not n.endswith("/"))
    raise FileNotFoundError(f"{path}: not a folder or a .zip of JPEGs")


def _read(path: Path, member: str) -> bytes:
    if path.is_dir():
        return (path / member).read_bytes()
    with zipfile.ZipFile(path) as zf:
        return zf.read(member)


def is_caltech101(path: Path) -> bool:
    names = _listing(path)
    return "train.txt" in names and any(n.startswith(CALTECH_ROOT + "/") for n in names)


def caltech101(path: Path, split: str) -> ImageSource:
    """Caltech-101's fixed ``split`` ("train" or "test"), without BACKGROUND_Google."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    path = Path(path)
    names = _listing(path)
    classes = sorted(
        {n.split("/")[1] for n in names if n.startswith(CALTECH_ROOT + "/") and n.count("/") == 2}
        - {CALTECH_BACKGROUND}
    )
    index = {c: i for i, c in enumerate(classes)}
    members, labels = [], []
    for line in _read(path, f"{split}.txt").decode().split():
        cls = line.split("/")[0]
        if cls == CALTECH_BACKGROUND:
            continue
        if cls not in index:
            raise CorruptFrameError(f"{path}: {split}.txt names {line}, not under a class folder")
        members.append(f"{CALTECH_ROOT}/{line}")
        labels.append(index[cls])
    return ImageSource(path, tuple(classes), tuple(members), tuple(labels), f"caltech101-{split}")


def image_folder(path: Path) -> ImageSource:
    """Every JPEG under ``<class>/`` sub-folders of a folder or zip (class = parent folder)."""
    path = Path(path)
    files = [n for n in _listing(path) if n.lower().endswith(IMAGE_SUFFIXES) and "/" in n]
    if not files:
        raise FileNotFoundError(f"{path}: no <class>/<image>.jpg inside")
    classes = sorted({n.split("/")[-2] for n in files})
    index = {c: i for i, c in enumerate(classes)}
    labels = [index[n.split("/")[-2]] for n in files]
    return ImageSource(path, tuple(classes), tuple(files), tuple(labels), path.stem)


def open_source(path: Path, split: str = "test") -> ImageSource:
    """Caltech-101's split when ``path`` is Caltech-101, else the whole image folder.

    ``path`` may also be a folder holding ``caltech101-jpeg.zip``."""
    path = Path(path)
    if path.is_dir() and (path / "caltech101-jpeg.zip").is_file():
        path = path / "caltech101-jpeg.zip"
    if not path.exists():
        raise FileNotFoundError(
            f"no images at {path}: set data.images (SPLITEE_DATA__IMAGES) to a folder or zip "
            "with one sub-folder per class, or to Caltech-101"
        )
    return caltech101(path, split) if is_caltech101(path) else image_folder(path)


def load_images(source: ImageSource, size: int, cache_dir: Path | None = None) -> Dataset:
    """Decode and fit every frame of ``source`` to size×size (cached as .npy, no pickle)."""
    from tqdm import tqdm

    cached = None
    if cache_dir is not None:
        st = source.path.stat()
        h = hashlib.sha256(
            f"{source.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{source.name}|{size}|"
            f"{len(source)}".encode()
        ).hexdigest()[:16]
        cached = (
            Path(cache_dir) / f"{source.name}-{size}-{h}-x.npy",
            Path(cache_dir) / f"{source.name}-{size}-{h}-y.npy",
        )
        if cached[0].exists() and cached[1].exists():
            return Dataset(
                np.load(cached[0], allow_pickle=False),
                np.load(cached[1], allow_pickle=False),
                source.name,
            )
    images = np.empty((len(source), size, size, 3), np.uint8)
    for i, (name, data, _) in enumerate(
        tqdm(source.iter_bytes(), total=len(source), desc=f"decode {source.name}", unit="img")
    ):
        try:
            images[i] = decode_fit(data, size)
        except CorruptFrameError as exc:
            raise CorruptFrameError(f"{source.path}:{name}: {exc}", exc.reason) from exc
    labels = np.asarray(source.labels, np.int64)
    if cached is not None:
        cached[0].parent.mkdir(parents=True, exist_ok=True)
        np.save(cached[0], images, allow_pickle=False)
        np.save(cached[1], labels, allow_pickle=False)
    return Dataset(images, labels, source.name)
