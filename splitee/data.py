"""CIFAR-10 as camera frames: JPEG zips, the official binary archive, and a decode cache.

Two on-disk sources are understood, looked up in ``data.dir``:

* ``cifar10-jpeg-{train,test}.zip`` (members ``<split>/<class>/<NNNN>.jpg``), the JPEG frames a
  cheap camera delivers; the repo's ``assets/cifar10-sample.zip`` has the same layout.
* the official *binary* release ``cifar-10-binary.tar.gz`` (or its extracted
  ``cifar-10-batches-bin/``), 1 label byte + 3072 pixel bytes per record. It is parsed as raw
  bytes, never unpickled, and its MD5 is checked against the published one.

Decoding 60,000 JPEGs takes a while, so decoded uint8 arrays are cached as ``.npy`` files in
``data.cache_dir``, keyed by the source file's name, size and modification time.
"""

from __future__ import annotations

import hashlib
import tarfile
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from splitee.jpeg import CIFAR_SHAPE, CorruptFrameError, decode_jpeg

CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SHAPE = CIFAR_SHAPE  # one CIFAR-10 image, uint8 HWC RGB
BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
BINARY_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
BINARY_NAME = "cifar-10-binary.tar.gz"
_RECORD = 1 + 32 * 32 * 3


class DataNotFoundError(FileNotFoundError):
    """No CIFAR-10 source where the settings say to look."""


@dataclass(frozen=True)
class Dataset:
    """Frames as uint8 NHWC RGB plus labels (labels are for evaluation only)."""

    images: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int, seed: int = 0) -> Dataset:
        """A seeded random subset of n frames (files are sorted by class, so no prefix)."""
        if n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return Dataset(
            self.images[idx], self.labels[idx], f"{self.source}[random {n}, seed {seed}]"
        )


def iter_zip_frames(path: Path) -> Iterator[tuple[str, bytes, int]]:
    """Yield (member name, JPEG bytes, label) in sorted member order."""
    with zipfile.ZipFile(path) as zf:
        for name in sorted(zf.namelist()):
            if not name.endswith(".jpg"):
                continue
            cls = name.split("/")[-2]
            if cls not in CLASSES:
                raise CorruptFrameError(f"{path}: member {name} is not under a class folder")
            yield name, zf.read(name), CLASSES.index(cls)


def _decode_zip(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from tqdm import tqdm

    with zipfile.ZipFile(path) as zf:
        total = sum(1 for n in zf.namelist() if n.endswith(".jpg"))
    images = np.empty((total, *IMAGE_SHAPE), np.uint8)
    labels = np.empty(total, np.int64)
    it = iter_zip_frames(path)
    for i, (name, data, label) in enumerate(
        tqdm(it, total=total, desc=f"decode {path.name}", unit="img", disable=total < 5000)
    ):
        try:
            images[i] = decode_jpeg(data)
        except CorruptFrameError as exc:
            raise CorruptFrameError(f"{path}:{name}: {exc}", exc.reason) from exc
        labels[i] = label
    return images, labels


# --------------------------------------------------------------------------- binary archive
def parse_binary_batch(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Parse one ``*_batch*.bin`` file of the official binary release (no pickle)."""
    if len(raw) % _RECORD:
        raise CorruptFrameError(f"binary batch of {len(raw)} bytes is not a multiple of {_RECORD}")
    rec = np.frombuffer(raw, np.uint8).reshape(-1, _RECORD)
    labels = rec[:, 0].astype(np.int64)
    if labels.max(initial=0) >= len(CLASSES):
        raise CorruptFrameError("binary batch has a label outside 0..9")
    images = rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
    return images, labels


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_binary(dest_dir: Path, url: str = BINARY_URL, md5: str = BINARY_MD5) -> Path:
    """Download the official binary archive into dest_dir and verify its MD5."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / BINARY_NAME
    if not target.exists():
        tmp = target.with_suffix(".part")
        urllib.request.urlretrieve(url, tmp)
        tmp.rename(target)
    verify_md5(target, md5)
    return target


def verify_md5(path: Path, md5: str = BINARY_MD5) -> None:
    got = md5sum(path)
    if got != md5:
        raise CorruptFrameError(f"{path}: MD5 {got} does not match the published {md5}")


def _read_binary(path: Path, split: str, md5: str | None = BINARY_MD5) -> tuple[np.ndarray, ...]:
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    if path.is_dir():
        for n in names:
            parts.append(parse_binary_batch((path / n).read_bytes()))
    else:
        if md5:
            verify_md5(path, md5)
        with tarfile.open(path, "r:gz") as tf:
            members = {Path(m.name).name: m for m in tf.getmembers() if m.isfile()}
            for n in names:
                if n not in members:
                    raise CorruptFrameError(f"{path}: archive lacks {n}")
                f = tf.extractfile(members[n])
                assert f is not None
                parts.append(parse_binary_batch(f.read()))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# --------------------------------------------------------------------------- lookup + cache
def find_source(data_dir: Path | None, split: str) -> Path:
    """The first CIFAR-10 source for ``split`` in data_dir, or a DataNotFoundError naming it."""
    if data_dir is not None:
        d = Path(data_dir)
        for cand in (
            d / f"cifar10-jpeg-{split}.zip",
            d / "cifar-10-batches-bin",
            d / BINARY_NAME,
        ):
            if cand.exists():
                return cand
    raise DataNotFoundError(
        f"no CIFAR-10 {split} data in data.dir={data_dir!s}: set SPLITEE_DATA__DIR (or "
        f"[data] dir in the settings file) to a folder with cifar10-jpeg-{split}.zip, "
        f"{BINARY_NAME} or cifar-10-batches-bin/, or set SPLITEE_DATA__DOWNLOAD=true to "
        "fetch the official binary archive"
    )


def _cache_key(src: Path, split: str) -> str:
    st = src.stat()
    h = hashlib.sha256(f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}|{split}".encode())
    return h.hexdigest()[:16]


def load_source(src: Path, split: str, cache_dir: Path | None = None) -> Dataset:
    """Decode one source (zip, tar.gz or batches dir), through the .npy cache when given."""
    cached = None
    if cache_dir is not None and src.is_file():
        key = _cache_key(src, split)
        cached = (cache_dir / f"{src.stem}-{key}-x.npy", cache_dir / f"{src.stem}-{key}-y.npy")
        if cached[0].exists() and cached[1].exists():
            return Dataset(
                np.load(cached[0], allow_pickle=False),
                np.load(cached[1], allow_pickle=False),
                str(src),
            )
    if src.suffix == ".zip":
        images, labels = _decode_zip(src)
    else:
        images, labels = _read_binary(src, split)
    if cached is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        np.save(cached[0], images, allow_pickle=False)
        np.save(cached[1], labels, allow_pickle=False)
    return Dataset(images, labels, str(src))


def load_cifar10(
    split: str,
    data_dir: Path | None,
    cache_dir: Path | None = None,
    download: bool = False,
) -> Dataset:
    """CIFAR-10 ``split`` ("train" or "test") from data_dir; download if allowed and missing."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    try:
        src = find_source(data_dir, split)
    except DataNotFoundError:
        if not (download and data_dir is not None):
            raise
        src = download_binary(Path(data_dir))
    return load_source(src, split, cache_dir)


def load_from_settings(split: str, settings: object) -> Dataset:
    """Convenience wrapper taking a :class:`splitee.settings.Settings`."""
    data = settings.data  # type: ignore[attr-defined]
    return load_cifar10(split, data.dir, data.cache_dir, data.download)
