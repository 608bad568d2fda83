"""The simulated link in the pipeline: cameras stamp snr_db, cloud workers corrupt features."""

from __future__ import annotations

import numpy as np

from cloud_workers.processor import CloudProcessor
from edge_workers.processor import EdgeProcessor
from policy_store import CostModel, ISplitEE, MemoryStore
from producers.camera import Camera, Frame
from producers.schedule import Schedule
from splitee.jpeg import encode_jpeg
from splitee.link import ConstantSNR, camera_process
from splitee.wire import FrameMeta, Result
from splitee.worker.records import InRecord
from tests.bandits import bandit


def test_camera_stamps_the_snr_of_its_process(sample_frames):
    frames = [
        Frame(encode_jpeg(img), int(y), i)
        for i, (img, y) in enumerate(
            zip(sample_frames.images[:5], sample_frames.labels[:5], strict=True)
        )
    ]
    proc = camera_process("rayleigh:10", "cam-1", 0)
    pristine = Schedule.parse(["pristine"])
    cam = Camera(
        camera_id="cam-1", source=frames, schedule=pristine, fps=100.0, order="fixed", channel=proc
    )
    sent = list(cam.frames(5))
    assert [f.meta.snr_db for f in sent] == [round(proc.snr_db(i), 3) for i in range(5)]
    back = FrameMeta.from_headers(sent[2].meta.headers())
    assert back.snr_db == sent[2].meta.snr_db
    plain = Camera(camera_id="cam-1", source=frames, schedule=pristine, fps=100.0, order="fixed")
    assert next(iter(plain.frames(1))).meta.snr_db is None


def _offloads(tiny_model, images, snr_db):
    cm = CostModel(tiny_model.exit_depths, gamma=0.1, mu=1.0, alpha=1.01, offload_cost=0.5)
    b = bandit(cm, MemoryStore(cm.num_arms), ISplitEE())
    edge = EdgeProcessor(tiny_model, b, codec="float32")
    recs = []
    for i, img in enumerate(images):
        meta = FrameMeta(f"cam-1:t:{i:08d}", "cam-1", 1000.0 + i, snr_db=snr_db)
        recs.append(InRecord(b"cam-1", encode_jpeg(img), meta.headers(), "frames", 0, i))
    out = edge.process(recs)
    offs = [
        InRecord(r.key, r.value, r.headers, "offload", 0, i) for i, r in enumerate(out.offloads)
    ]
    return b, offs


def test_cloud_applies_the_channel_at_the_frames_snr(tiny_model, sample_frames):
    b, offs = _offloads(tiny_model, sample_frames.images[:24], snr_db=-20.0)
    assert offs  # α > 1: every frame not at the last arm is offloaded

    def confidences(channel):
        cloud = CloudProcessor(tiny_model, b, channel=channel, channel_seed=1)
        res = cloud.process(offs)
        assert not res.dead
        return np.array([Result.decode(r.value).confidence for r in res.results])

    clean = confidences(None)
    assert not np.allclose(confidences("analog"), clean)
    assert np.allclose(confidences("digital"), clean, atol=0.05)  # 8-bit: nearly clean
    # without an snr_db header the link is not simulated
    _, plain = _offloads(tiny_model, sample_frames.images[:24], snr_db=None)
    cloud = CloudProcessor(tiny_model, b, channel="analog")
    got = np.array([Result.decode(r.value).confidence for r in cloud.process(plain).results])
    assert np.allclose(got, clean)
    assert ConstantSNR(3.0).snr_db(7) == 3.0
