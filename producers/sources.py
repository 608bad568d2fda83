"""Frame sources for cameras: the shipped sample, the configured CIFAR-10 split, or real-size
images (data.images: Caltech-101's test split or a folder of class sub-folders), as JPEG."""

from __future__ import annotations

from producers.camera import Frame
from splitee.data import find_source, iter_zip_frames, load_source
from splitee.images import open_source
from splitee.jpeg import encode_jpeg
from splitee.settings import Settings


def load_frames(source: str, settings: Settings) -> list[Frame]:
    """JPEG frames with labels: ``sample`` (shipped zip), or ``test``/``train`` from data.dir.

    Zips are read byte for byte (the camera sends what is stored); the binary archive's raw
    pixels are JPEG-encoded at quality 75, like the shipped frames.
    """
    if source == "images":  # real-size JPEGs, sent byte for byte at their own resolution
        if settings.data.images is None:
            raise FileNotFoundError("producer.source = 'images' needs data.images")
        src = open_source(settings.data.images, "test")
        return [Frame(b, y, i) for i, (_, b, y) in enumerate(src.iter_bytes())]
    path = settings.data.sample if source == "sample" else find_source(settings.data.dir, source)
    if path.suffix == ".zip":
        return [Frame(b, y, i) for i, (_, b, y) in enumerate(iter_zip_frames(path))]
    ds = load_source(path, source, settings.data.cache_dir)
    pairs = zip(ds.images, ds.labels, strict=True)
    return [Frame(encode_jpeg(x, 75), int(y), i) for i, (x, y) in enumerate(pairs)]
