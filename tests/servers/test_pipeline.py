"""End to end on real Kafka and Redis: cameras → edge workers → cloud worker → results.

One pipeline (2 edge workers, 1 cloud worker, own topics, groups and Redis namespace) serves
every test in this module.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from policy_store.redis_store import RedisStore
from producers.camera import Frame
from splitee import policy_setup
from splitee.data import iter_zip_frames
from splitee.jpeg import encode_jpeg
from splitee.kafka_io import consumer, dlq, producer
from splitee.results import collect_results
from splitee.testing import Pipeline, settled_stats
from splitee.wire import FrameMeta, OffloadMeta, encode_tensor, header_map
from tests.conftest import SAMPLE

#: Frames whose id starts with this make the edge workers' step raise
#: (splitee.worker.fault_injection).
RAISES = "raises-in-step:"


@pytest.fixture(scope="module")
def pipeline(servers, tmp_path_factory):
    p = Pipeline.create(tmp_path_factory.mktemp("pipeline"), SPLITEE_EDGE__MAX_FRAME_BYTES="20000")
    p.start("edge", "edge-1", 0, "--fail-on-frame", RAISES)
    p.start("edge", "edge-2", 0, "--fail-on-frame", RAISES)
    p.start("cloud", "cloud-1")
    try:
        p.wait_ready(edge=2, cloud=1)
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def frames():
    return [Frame(b, y, i) for i, (_, b, y) in enumerate(iter_zip_frames(SAMPLE))]


def stream(p: Pipeline, frames, per_camera: int, fps: float = 0.0, run_id: str = ""):
    """Send from 2 cameras (threads) and return what was sent."""
    return p.stream(frames, per_camera, fps, run_id)


def store_of(p: Pipeline) -> RedisStore:
    s = p.settings
    return policy_setup.store(s, 9, cache_ms=0)  # the workers' keys (the model's)


def test_every_frame_one_result_pulls_add_up_and_accuracy_matches_offline(
    pipeline, frames, trained_model
):
    from policy_store.rewards import CostModel
    from splitee.distortions import Distortion
    from splitee.evaluate.outputs import compute_outputs
    from splitee.evaluate.runner import EvalConfig, SettingOutputs, run_evaluation

    before = store_of(pipeline).read_fresh("global")
    run = f"e2e-{uuid.uuid4().hex[:6]}"
    sent = stream(pipeline, frames, per_camera=1000, run_id=run)
    assert len(sent) == 2000
    ids = {f.meta.frame_id for f in sent}
    view = collect_results(pipeline.settings.kafka, ids, timeout_s=300, run_id=run)
    missing = ids - set(view.results)
    assert not missing, f"{len(missing)} frames without a result\n{pipeline.log_tail('edge-1')}"
    assert set(view.results) == ids

    # A batch's policy delta is applied after its results are acknowledged (at-least-once),
    # so the last batches' updates may land a moment after their results are read.
    after = settled_stats(store_of(pipeline), "global", float(before.t), expect=2000)
    decisions = after.pulls.sum() - before.pulls.sum()
    assert decisions == 2000
    assert float(after.t - before.t) == 2000

    truth = {f.meta.frame_id: f.label for f in sent}
    live_acc = np.mean([r.prediction == truth[f] for f, r in view.results.items()])

    # The offline evaluator on exactly these frames, same policy and settings.
    from splitee.jpeg import decode_jpeg

    images = np.stack([decode_jpeg(f.jpeg) for f in sent])
    labels = np.array([f.label for f in sent])
    outputs = compute_outputs(trained_model, images)
    s = pipeline.settings.policy
    # the policy settings and α the workers resolved
    cfg = EvalConfig.from_settings(pipeline.settings, runs=20, distortions=["pristine"], seed=0)
    summary = run_evaluation(
        [SettingOutputs(Distortion(), outputs, labels)], trained_model.exit_depths, cfg
    )
    offline = next(r for r in summary["results"] if r["method"] == "isplitee-online")
    assert abs(live_acc - offline["accuracy"]) <= 0.02, (live_acc, offline)
    # and the live costs follow the same cost model
    cm = CostModel(trained_model.exit_depths, s.gamma, s.mu, s.alpha, s.offload_cost)
    for r in list(view.results.values())[:50]:
        expect = cm.compute_cost[r.arm] + (cm.offload_cost if r.where == "cloud" else 0)
        assert r.cost == pytest.approx(expect)


def _read_dlq(p: Pipeline, topic: str, want: int, timeout: float = 60) -> list[dict[str, bytes]]:
    from kafka import TopicPartition

    c = consumer(p.settings.kafka, group_id=None)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    out: list[dict[str, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            out += [header_map(r.headers) for r in recs]
    c.close()
    return out


def test_bad_input_lands_in_dead_letter_topics_and_workers_go_on(pipeline, frames):
    k = pipeline.settings.kafka
    prod = producer(k)
    run = f"dlq-{uuid.uuid4().hex[:6]}"

    def meta(i: int, schema: int = 1, ahead_s: float = 0.0):
        m = FrameMeta(f"bad:{run}:{i}", "cam-bad", time.time() + ahead_s, run_id=run)
        hs = m.headers()
        return [(h, v if h != "schema" else str(schema).encode()) for h, v in hs]

    noise = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    bad_frames = {
        "corrupt_jpeg": (b"\xff\xd8\xff\xe0 this is no jpeg", meta(0)),
        "wrong_shape": (encode_jpeg(np.zeros((48, 48, 3), np.uint8)), meta(1)),
        "unknown_version": (frames[0].jpeg, meta(2, schema=7)),
        "oversized": (encode_jpeg(noise, 95) * 30, meta(3)),
        "future_capture_ts": (frames[0].jpeg, meta(4, ahead_s=10 * 365 * 86400.0)),
    }
    for value, headers in bad_frames.values():
        prod.send(k.frames_topic, key=b"cam-bad", value=value, headers=headers)
    # Offload records the cloud must refuse.
    good_feats = encode_tensor(np.zeros((16, 32, 32), np.float32), "float16")
    om = OffloadMeta(
        arm=0, confidences=[0.1] + [None] * 8, codec="float16", policy="global", edge_ts=time.time()
    ).headers()
    bad_offloads = {
        "size_mismatch": good_feats[:-6],
        "wrong_shape": encode_tensor(np.zeros((16, 8, 8), np.float32)),
        "unknown_version": good_feats[:4] + bytes([3]) + good_feats[5:],
    }
    for i, value in enumerate(bad_offloads.values()):
        prod.send(k.offload_topic, key=b"x", value=value, headers=meta(10 + i) + om)
    prod.flush()
    # ... and the workers keep processing the frames that follow.
    sent = stream(pipeline, frames, per_camera=50, run_id=run)
    ids = {f.meta.frame_id for f in sent}
    view = collect_results(k, ids, timeout_s=120, run_id=run)
    assert ids <= set(view.results)

    edge_dead = _read_dlq(pipeline, dlq(k.frames_topic, k), len(bad_frames))
    assert sorted(h["dlq_reason"].decode() for h in edge_dead) == sorted(bad_frames)
    for h in edge_dead:
        assert h["dlq_source"].decode().startswith(k.frames_topic + "/")
        assert h["dlq_detail"]
    cloud_dead = _read_dlq(pipeline, dlq(k.offload_topic, k), len(bad_offloads))
    assert sorted(h["dlq_reason"].decode() for h in cloud_dead) == sorted(bad_offloads)


def test_sigkill_of_an_edge_worker_mid_stream_loses_no_frame(pipeline, frames):
    import threading

    k = pipeline.settings.kafka
    run = f"kill-{uuid.uuid4().hex[:6]}"
    box: dict[str, list] = {}
    t = threading.Thread(
        target=lambda: box.__setitem__("sent", stream(pipeline, frames, 600, fps=150, run_id=run))
    )
    t.start()
    time.sleep(3.0)  # mid-stream
    pipeline.kill("edge-1")
    pipeline.start("edge", "edge-1", 0, "--fail-on-frame", RAISES)  # as the fixture started it
    t.join()
    sent = box["sent"]
    ids = {f.meta.frame_id for f in sent}
    view = collect_results(k, ids, timeout_s=300, run_id=run)
    missing = ids - set(view.results)
    assert not missing, f"{len(missing)} frames lost\n{pipeline.log_tail('edge-1')}"
    assert len(view.results) == len(ids) == 1200
    pipeline.wait_ready(edge=2, cloud=1)


def test_a_record_that_raises_in_the_step_is_isolated_and_the_worker_goes_on(pipeline, frames):
    """The batch is retried record by record: the raising record is dead-lettered
    (``processing_error``), every other frame answered and counted once in the policy, and no
    worker exits — before Delta.merge kept the frames' ids, the merged delta of the good frames
    made the Redis store raise and each edge worker that took the batch fail-stopped."""
    k = pipeline.settings.kafka
    run = f"raise-{uuid.uuid4().hex[:6]}"
    pids = {name: proc.pid for name, proc in pipeline.procs.items()}
    before = store_of(pipeline).read_fresh("global")
    metas = [FrameMeta(f"cam-r:{run}:{i:04d}", "cam-r", time.time(), run_id=run) for i in range(24)]
    metas[8] = FrameMeta(f"{RAISES}{run}", "cam-r", time.time(), run_id=run)
    prod = producer(k)
    try:  # one key, one partition: the frames reach an edge worker as one batch or a few
        for i, m in enumerate(metas):
            prod.send(k.frames_topic, key=b"cam-r", value=frames[i].jpeg, headers=m.headers())
        prod.flush()
    finally:
        prod.close()

    good = {m.frame_id for m in metas} - {metas[8].frame_id}
    view = collect_results(k, good, timeout_s=120, run_id=run)
    assert set(view.results) == good, pipeline.log_tail("edge-1") + pipeline.log_tail("edge-2")
    counted = float(
        settled_stats(store_of(pipeline), "global", float(before.t), len(good)).t - before.t
    )
    alive = {name: proc.pid for name, proc in pipeline.procs.items() if proc.poll() is None}
    assert alive == pids, "a worker exited\n" + pipeline.log_tail("edge-1")
    assert counted == len(good)
    c = consumer(k, dlq(k.frames_topic, k), consumer_timeout_ms=5000)
    dead = [h for h in (header_map(r.headers) for r in c) if h.get("run_id") == run.encode()]
    c.close()
    assert [(h["frame_id"].decode(), h["dlq_reason"]) for h in dead] == [
        (metas[8].frame_id, b"processing_error")
    ]
