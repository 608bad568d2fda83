"""Real-size frames: decoding and fitting odd sizes and grey-scale JPEGs, image folders and
Caltech-101's layout, distortions at any size, and the bytes-based offload cost."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from policy_store.rewards import CostModel, bytes_scale
from splitee.distortions import CHUNK, Distortion
from splitee.images import decode_fit, fit, image_folder, load_images, open_source
from splitee.jpeg import CorruptFrameError
from tests.conftest import REPO


def _jpeg(h: int, w: int, mode: str = "RGB", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (h, w) if mode == "L" else (h, w, len(mode))
    img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("h", "w", "mode"),
    [(217, 333, "RGB"), (333, 217, "RGB"), (31, 45, "RGB"), (300, 201, "L"), (101, 77, "CMYK")],
)
def test_odd_sizes_and_grey_scale_decode_to_the_model_input(h: int, w: int, mode: str) -> None:
    out = decode_fit(_jpeg(h, w, mode), 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    if mode == "L":  # grey frames come out as RGB with equal channels (up to rounding)
        assert np.abs(out[..., 0].astype(int) - out[..., 2]).max() <= 2


def test_large_frames_decode_at_reduced_scale_to_the_same_picture() -> None:
    """A 1600×1000 frame is decoded at 1/4 scale (400×250) before the resize."""
    data = simplejpeg.encode_jpeg(
        np.kron(
            np.random.default_rng(1).integers(0, 256, (25, 40, 3), np.uint8),
            np.ones((40, 40, 1), np.uint8),
        ),
        quality=95,
    )
    assert simplejpeg.decode_jpeg(data, min_height=224, min_width=224).shape == (250, 400, 3)
    fast = decode_fit(data, 224)
    full = fit(simplejpeg.decode_jpeg(data, colorspace="RGB"), 224)
    assert fast.shape == (224, 224, 3)
    assert np.abs(fast.astype(int) - full).mean() < 4  # flat 40-px tiles: nearly the same


def test_fit_keeps_the_centre_and_the_aspect() -> None:
    img = np.zeros((100, 300, 3), np.uint8)
    img[:, 100:200] = 255  # the centre third is white
    out = fit(img, 50)
    assert out.shape == (50, 50, 3)
    assert out[:, 5:45].min() > 200  # centre crop of the 50x150 resize: all white


def _resize_then_crop(image: np.ndarray, size: int) -> np.ndarray:
    """What fit did before it bounded its work: resize the whole frame, then crop the centre."""
    h, w = image.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    img = Image.fromarray(image, "RGB").resize((nw, nh), Image.Resampling.BILINEAR)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.array(img.crop((left, top, left + size, top + size)))


@pytest.mark.parametrize(
    ("h", "w", "size"),
    [(217, 333, 224), (333, 217, 64), (1000, 1600, 224), (31, 45, 48), (224, 896, 224)],
)
def test_camera_shaped_frames_fit_bit_for_bit_as_before(h: int, w: int, size: int) -> None:
    img = np.random.default_rng(h).integers(0, 256, (h, w, 3), np.uint8)
    assert np.array_equal(fit(img, size), _resize_then_crop(img, size))


@pytest.mark.parametrize(("h", "w"), [(60, 900), (1000, 45), (224, 4000), (8, 300)])
def test_elongated_frames_fit_from_the_crop_alone_to_nearly_the_same_pixels(h, w) -> None:
    """Beyond 4:1 only the crop is resampled; the grid is the whole resize's, up to rounding."""
    img = np.random.default_rng(w).integers(0, 256, (h, w, 3), np.uint8)
    diff = np.abs(fit(img, 224).astype(int) - _resize_then_crop(img, 224))
    assert diff.max() <= 1


#: Each worst case in a fresh interpreter (nothing of pytest's in its memory), with its peak RSS
#: reset (Linux: /proc/self/clear_refs) just before decode_fit: prints (seconds, MB of growth).
_WORST_CASE = textwrap.dedent(
    """
    import re, sys, time
    from pathlib import Path
    from splitee.images import decode_fit
    def peak_kb():
        return int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text())[1])
    data = Path(sys.argv[1]).read_bytes()
    Path("/proc/self/clear_refs").write_text("5")
    before, t = peak_kb(), time.perf_counter()
    out = decode_fit(data, 224, max_aspect=None)
    dt = time.perf_counter() - t
    assert out.shape == (224, 224, 3)
    print(dt, (peak_kb() - before) / 1024)
    """
)


@pytest.mark.parametrize(("h", "w"), [(4, 60000), (2, 65500)])
def test_the_thinnest_frames_fit_in_bounded_time_and_memory(tmp_path, h: int, w: int) -> None:
    """Resizing the whole 60000×4 frame before cropping took 18.8 s and 2.7 GB of peak RSS on
    this project's loaded 2-core machine, 65500×2 14.6 s and 4.2 GB; the crop alone takes
    about 0.02 s and 2 MB (the bounds leave room for a loaded CI machine)."""
    path = tmp_path / "thin.jpg"
    path.write_bytes(_jpeg(h, w))
    run = subprocess.run(
        [sys.executable, "-c", _WORST_CASE, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seconds, peak_mb = map(float, run.stdout.split())
    assert seconds < 1.0 and peak_mb < 64, (seconds, peak_mb)


def test_frames_beyond_the_aspect_bound_are_refused_before_decoding() -> None:
    thin = simplejpeg.encode_jpeg(np.zeros((4, 60000, 3), np.uint8))
    with pytest.raises(CorruptFrameError) as e:
        decode_fit(thin, 224, max_aspect=20)
    assert e.value.reason == "bad_aspect" and "60000x4" in str(e.value)
    assert decode_fit(_jpeg(10, 200), 32, max_aspect=20).shape == (32, 32, 3)  # 20:1 is fine
    with pytest.raises(CorruptFrameError):
        decode_fit(_jpeg(200, 9), 32, max_aspect=20)  # either way round


def test_bad_frames_are_refused_with_a_reason() -> None:
    with pytest.raises(CorruptFrameError) as e:
        decode_fit(b"GIF89a....", 32)
    assert e.value.reason == "corrupt_jpeg"
    with pytest.raises(CorruptFrameError) as e:
        decode_fit(_jpeg(200, 300), 32, max_pixels=1000)
    assert e.value.reason == "frame_too_large"
    with pytest.raises(CorruptFrameError):
        decode_fit(_jpeg(40, 40)[:60], 32)


def _caltech_zip(path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for cls in ("BACKGROUND_Google", "accordion", "zebra"):
            for i in range(1, 4):
                zf.writestr(
                    f"101_ObjectCategories/{cls}/image_000{i}.jpg", _jpeg(60 + i, 80, seed=i)
                )
        zf.writestr(
            "train.txt",
            "BACKGROUND_Google/image_0001.jpg\naccordion/image_0001.jpg\naccordion/image_0002.jpg\n"
            "zebra/image_0001.jpg\nzebra/image_0002.jpg\n",
        )
        zf.writestr(
            "test.txt",
            "BACKGROUND_Google/image_0003.jpg\naccordion/image_0003.jpg\nzebra/image_0003.jpg\n",
        )


def test_caltech_layout_split_and_background_dropped(tmp_path) -> None:
    path = tmp_path / "caltech101-jpeg.zip"
    _caltech_zip(path)
    train, test = open_source(tmp_path, "train"), open_source(path, "test")
    assert train.classes == test.classes == ("accordion", "zebra")
    assert len(train) == 4 and list(test.labels) == [0, 1]
    ds = load_images(test, 32, tmp_path / "cache")
    assert ds.images.shape == (2, 32, 32, 3)
    again = load_images(test, 32, tmp_path / "cache")  # from the .npy cache
    assert np.array_equal(again.images, ds.images)


def test_image_folder_of_any_jpegs(tmp_path) -> None:
    for cls, sizes in (("cat", [(50, 70), (120, 90)]), ("dog", [(33, 33)])):
        (tmp_path / cls).mkdir()
        for i, (h, w) in enumerate(sizes):
            (tmp_path / cls / f"{i}.jpg").write_bytes(_jpeg(h, w, seed=i))
    src = image_folder(tmp_path)
    assert src.classes == ("cat", "dog") and list(src.labels) == [0, 0, 1]
    assert load_images(src, 40).images.shape == (3, 40, 40, 3)


@pytest.mark.parametrize(
    "spec", ["noise:0.1", "blur:1.5", "brightness:0.5", "contrast:0.6", "jpeg:30"]
)
def test_distortions_work_at_any_size(spec: str) -> None:
    x = np.random.default_rng(0).integers(0, 256, (2, 37, 53, 3), dtype=np.uint8)
    out = Distortion.parse(spec).apply(x, seed=3)
    assert out.shape == x.shape and out.dtype == np.uint8
    assert Distortion.parse(spec).apply(x[0], seed=3).shape == x[0].shape


def test_chunked_distortion_gives_the_numbers_of_one_batch() -> None:
    """Real-size batches are distorted in chunks; the noise stream is the same."""
    x = np.random.default_rng(0).integers(0, 256, (CHUNK + 5, 6, 7, 3), dtype=np.uint8)
    d = Distortion.parse("noise:0.2")
    whole = np.concatenate([d.apply(x, seed=9)])
    rng = np.random.default_rng(9)
    ref = np.clip(
        np.rint(x.astype(np.float32) + rng.standard_normal(x.shape, dtype=np.float32) * 0.2 * 255),
        0,
        255,
    )
    assert np.array_equal(whole, ref.astype(np.uint8))


def test_bytes_based_offload_cost_on_hand_made_rows() -> None:
    """Arm 0 sends the 15 kB JPEG (o·1), arm 1 a 60 kB tensor (o·4), arm 2 is final."""
    scale = bytes_scale([15000, 60000, 0], 15000)
    cm = CostModel(
        (0, 3, 9), gamma=0.1, offload_cost=0.5, relative_cost=(0.0, 0.3, 1.0), offload_scale=scale
    )
    conf = np.array(
        [
            [0.0, 0.9, 0.8],  # exits at arm 1 (C ≥ α): no offload
            [0.0, 0.2, 0.7],  # offloaded at arm 1: pays 4·o
        ]
    )
    lam = cm.compute_cost
    assert lam.tolist() == pytest.approx([0.0, 0.27, 0.9])
    costs = cm.cost_matrix(conf)
    assert costs[0].tolist() == pytest.approx([0.5, 0.27, 0.9])
    assert costs[1].tolist() == pytest.approx([0.5, 0.27 + 2.0, 0.9])
    r = cm.reward_matrix(conf)
    assert r[0].tolist() == pytest.approx([0.8 - 0.5, 0.9 - 0.27, 0.8 - 0.9])
    assert r[1].tolist() == pytest.approx([0.7 - 0.5, 0.7 - 2.27, 0.7 - 0.9])
    # the constant mode is the same model with every scale 1
    flat = CostModel((0, 3, 9), gamma=0.1, offload_cost=0.5, relative_cost=(0.0, 0.3, 1.0))
    assert flat.cost_matrix(conf)[1].tolist() == pytest.approx([0.5, 0.77, 0.9])


def test_cameras_send_real_size_frames_as_stored_and_distort_them_at_their_size():
    from producers.camera import Camera, Frame
    from producers.schedule import Schedule

    jpegs = [_jpeg(217, 333, seed=1), _jpeg(120, 90, seed=2)]
    frames = [Frame(b, i, i) for i, b in enumerate(jpegs)]
    schedule = Schedule.parse(["pristine@2f", "noise:0.1@2f"])
    cam = Camera(camera_id="cam-9", source=frames, schedule=schedule, fps=0, order="fixed")
    sent = list(cam.frames(4))
    assert [f.jpeg for f in sent[:2]] == jpegs  # pristine frames byte for byte
    noisy = [decode_fit(f.jpeg, 64) for f in sent[2:]]
    assert simplejpeg.decode_jpeg_header(sent[2].jpeg)[:2] == (217, 333)  # own resolution
    assert all(x.shape == (64, 64, 3) for x in noisy)


def test_run_summary_reports_offloaded_bytes_against_the_jpeg():
    from splitee.results import summarize
    from splitee.wire import Result

    def res(i, where, nbytes):
        return Result(f"f{i}", "c", 0, 0.9, 0, where, 0.0, 0.1, offload_bytes=nbytes, cost=0.5)

    rs = {f"f{i}": res(i, w, b) for i, (w, b) in enumerate([("edge", 0), ("cloud", 3000)])}
    truth = {f"f{i}": {"label": 0, "jpeg_bytes": 2000} for i in range(2)}
    out = summarize(rs, truth, 1.0)
    assert out["offload_bytes_per_frame"] == 1500.0
    assert out["jpeg_bytes_per_frame"] == 2000.0
    assert out["offload_bytes_vs_jpeg"] == 0.75


def test_truth_records_carry_the_jpeg_bytes():
    from splitee.wire import decode_truth

    t = {"label": 3, "camera_id": "c", "distortion": "pristine", "index": 0, "run_id": "r"}
    assert decode_truth(json.dumps({**t, "jpeg_bytes": 12844}).encode())["jpeg_bytes"] == 12844
