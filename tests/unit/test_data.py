"""Data sources, the decode cache, clear errors, and distortions."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import numpy as np
import pytest

from splitee.data import DataNotFoundError, load_cifar10, load_source, parse_binary_batch
from splitee.distortions import Distortion
from splitee.jpeg import CorruptFrameError, decode_jpeg, encode_jpeg
from tests.conftest import SAMPLE


def test_sample_zip_loads_balanced(sample_frames):
    assert sample_frames.images.shape == (2000, 32, 32, 3)
    assert sample_frames.images.dtype == np.uint8
    assert np.bincount(sample_frames.labels).tolist() == [200] * 10


def test_missing_data_error_names_the_setting(tmp_path):
    with pytest.raises(DataNotFoundError, match="SPLITEE_DATA__DIR"):
        load_cifar10("test", tmp_path)
    with pytest.raises(DataNotFoundError, match=r"data\.dir=None"):
        load_cifar10("test", None)


def test_corrupt_jpeg_is_a_clear_error():
    good = encode_jpeg(np.zeros((32, 32, 3), np.uint8))
    assert decode_jpeg(good).shape == (32, 32, 3)
    with pytest.raises(CorruptFrameError, match="not a decodable image"):
        decode_jpeg(b"\xff\xd8\xff garbage")
    with pytest.raises(CorruptFrameError, match="not a decodable image"):
        decode_jpeg(good[: len(good) // 2])
    with pytest.raises(CorruptFrameError, match="shape"):
        decode_jpeg(encode_jpeg(np.zeros((16, 32, 3), np.uint8)))


def test_corrupt_member_in_zip_names_the_member(tmp_path):
    bad = tmp_path / "cifar10-jpeg-test.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("test/cat/0000.jpg", encode_jpeg(np.zeros((32, 32, 3), np.uint8)))
        z.writestr("test/cat/0001.jpg", b"not a jpeg")
    with pytest.raises(CorruptFrameError, match=r"test/cat/0001\.jpg"):
        load_cifar10("test", tmp_path)


def _binary_archive(tmp_path, n=20):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    pixels = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
    raw = np.concatenate([labels[:, None], pixels], axis=1).tobytes()
    path = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name in ["test_batch.bin"] + [f"data_batch_{i}.bin" for i in range(1, 6)]:
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))
    return path, labels, pixels


def test_binary_archive_parsed_without_pickle_and_checksummed(tmp_path, monkeypatch):
    path, labels, pixels = _binary_archive(tmp_path)
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setattr("splitee.data.BINARY_MD5", md5)
    from splitee import data as data_mod

    x, y = data_mod._read_binary(path, "test", md5)
    assert y.tolist() == labels.tolist()
    # channel-planar (R, G, B planes) → HWC
    assert x[3, 0, 0].tolist() == [pixels[3, 0], pixels[3, 1024], pixels[3, 2048]]
    with pytest.raises(CorruptFrameError, match="MD5"):
        data_mod._read_binary(path, "test", "0" * 32)
    train_x, _ = data_mod._read_binary(path, "train", md5)
    assert len(train_x) == 5 * len(labels)


def test_binary_batch_size_checked():
    with pytest.raises(CorruptFrameError, match="multiple of 3073"):
        parse_binary_batch(b"\x00" * 100)


def test_decode_cache_reused(tmp_path):
    cache = tmp_path / "cache"
    a = load_source(SAMPLE, "test", cache)
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 2
    b = load_source(SAMPLE, "test", cache)
    assert (a.images == b.images).all() and (a.labels == b.labels).all()


@pytest.mark.parametrize(
    "spec", ["pristine", "noise:0.1", "blur:1.0", "brightness:0.4", "contrast:0.5", "jpeg:30"]
)
def test_distortions_are_deterministic(spec, sample_frames):
    d = Distortion.parse(spec)
    x = sample_frames.images[:16]
    a, b = d.apply(x, seed=7), d.apply(x, seed=7)
    assert a.dtype == np.uint8 and a.shape == x.shape
    assert (a == b).all()
    if spec != "pristine":
        assert not (a == x).all()


def test_noise_level_is_sigma_on_unit_scale():
    x = np.full((64, 32, 32, 3), 128, np.uint8)
    y = Distortion("noise", 0.1).apply(x, seed=1).astype(float) / 255
    assert y.std() == pytest.approx(0.1, rel=0.05)


def test_blur_smooths_and_darkness_darkens(sample_frames):
    x = sample_frames.images[:32]
    blurred = Distortion("blur", 1.5).apply(x).astype(float)
    assert (
        np.abs(np.diff(blurred, axis=2)).mean()
        < 0.6 * np.abs(np.diff(x.astype(float), axis=2)).mean()
    )
    dark = Distortion("brightness", 0.3).apply(x)
    assert dark.mean() == pytest.approx(0.3 * x.mean(), rel=0.05)


def test_bad_distortion_specs():
    with pytest.raises(ValueError, match="unknown distortion"):
        Distortion.parse("fog:1")
    with pytest.raises(ValueError, match="kind:level"):
        Distortion.parse("noise")
    with pytest.raises(ValueError, match="jpeg quality"):
        Distortion("jpeg", 0)
