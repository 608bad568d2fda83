"""Edge and cloud batch steps without Kafka: outputs, rewards, and every kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest

from cloud_workers.processor import CloudProcessor
from edge_workers.processor import EdgeProcessor
from policy_store import UCB1, CostModel, ISplitEE, MemoryStore
from policy_store.keys import PolicyKeys
from policy_store.stats import ArmStats
from splitee.jpeg import encode_jpeg
from splitee.wire import FrameMeta, Result, decode_tensor, encode_tensor
from splitee.worker.records import InRecord
from tests.bandits import bandit


def frame_record(i: int, img: np.ndarray, **meta_overrides) -> InRecord:
    meta = FrameMeta(f"cam-1:t:{i:08d}", "cam-1", 1000.0 + i)
    headers = meta.headers()
    if meta_overrides.get("schema"):
        headers = [(k, v) for k, v in headers if k != "schema"]
        headers.append(("schema", str(meta_overrides["schema"]).encode()))
    value = meta_overrides.get("value", encode_jpeg(img))
    return InRecord(b"cam-1", value, headers, "frames", 0, i)


@pytest.fixture
def setup(tiny_model, sample_frames):
    cm = CostModel(tiny_model.exit_depths, gamma=0.1, mu=1.0, alpha=0.3, offload_cost=0.5)
    store = MemoryStore(cm.num_arms)
    b = bandit(cm, store, ISplitEE())  # one bandit for both steps, as in a deployment
    edge = EdgeProcessor(tiny_model, b, codec="float16", max_frame_bytes=4096)
    cloud = CloudProcessor(tiny_model, b)
    return edge, cloud, store, cm, sample_frames.images


def as_input(out_records, topic="offload"):
    return [InRecord(r.key, r.value, r.headers, topic, 0, i) for i, r in enumerate(out_records)]


def test_edge_then_cloud_gives_one_result_per_frame(setup):
    edge, cloud, store, _, images = setup
    recs = [frame_record(i, images[i]) for i in range(40)]
    out = edge.process(recs)
    assert not out.dead
    assert len(out.results) + len(out.offloads) == 40
    for r in out.offloads:  # features decode to the arm's shape
        arm = int(dict(r.headers)["arm"])
        assert decode_tensor(r.value).shape == edge.model.feature_shape(arm)
    edge.apply(out)
    back = cloud.process(as_input(out.offloads))
    assert not back.dead
    cloud.apply(back)
    ids = [Result.decode(r.value).frame_id for r in out.results + back.results]
    assert sorted(ids) == sorted(r.headers[0][1].decode() for r in recs)
    st = store.read("global")
    assert st.pulls.sum() == 40 == float(st.t)  # every decision counted exactly once
    assert st.n.sum() >= 40  # plus side observations


def test_pull_batch_spreads_a_batch_like_a_sequential_learner():
    stats = ArmStats.zeros(4)
    arms = UCB1().pull_batch(stats, 8)
    assert arms[:4] == [0, 1, 2, 3]  # every arm once, even within one batch
    assert stats.t == 0  # virtual pulls never touch the caller's statistics


def test_edge_dead_letters_and_goes_on(setup):
    edge, _, _, _, images = setup
    big = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    recs = [
        frame_record(0, images[0]),
        frame_record(1, images[1], value=b"\xff\xd8 not a jpeg"),
        frame_record(2, images[2], value=encode_jpeg(np.zeros((64, 64, 3), np.uint8))),
        frame_record(3, images[3], schema=99),
        frame_record(4, images[4], value=encode_jpeg(big, 95) * 8),
        frame_record(5, images[5]),
    ]
    out = edge.process(recs)
    reasons = {d.record.offset: d.reason for d in out.dead}
    assert reasons == {1: "corrupt_jpeg", 2: "wrong_shape", 3: "unknown_version", 4: "oversized"}
    assert len(out.results) + len(out.offloads) == 2


def test_cloud_dead_letters_and_goes_on(setup):
    edge, cloud, _, _, images = setup
    edge.cm = CostModel(edge.model.exit_depths, alpha=1.01)  # offload everything
    out = edge.process([frame_record(i, images[i]) for i in range(5)])
    offl = as_input(out.offloads)
    assert len(offl) >= 5 - sum(1 for r in out.results)
    good = offl[0]
    arm = int(dict(good.headers)["arm"])
    wrong = encode_tensor(np.zeros((3, 4, 4), np.float32))
    bad_version = bytes([*good.value[:4], 9, *good.value[5:]])
    recs = [
        good,
        InRecord(good.key, good.value[:-10], good.headers, "offload", 0, 101),
        InRecord(good.key, wrong, good.headers, "offload", 0, 102),
        InRecord(good.key, bad_version, good.headers, "offload", 0, 103),
        InRecord(
            good.key, good.value, [h for h in good.headers if h[0] != "arm"], "offload", 0, 104
        ),
    ]
    back = cloud.process(recs)
    reasons = {d.record.offset: d.reason for d in back.dead}
    assert reasons == {
        101: "size_mismatch",
        102: "wrong_shape",
        103: "unknown_version",
        104: "missing_header",
    }
    assert len(back.results) == 1 and Result.decode(back.results[0].value).arm == arm


@pytest.mark.parametrize("codec,tol", [("float32", 0), ("float16", 1e-2), ("int8", 2e-2)])
def test_codecs_roundtrip(codec, tol):
    x = np.random.default_rng(1).standard_normal((16, 32, 32)).astype(np.float32)
    y = decode_tensor(encode_tensor(x, codec))
    assert y.shape == x.shape
    assert np.abs(y - x).max() <= tol * np.abs(x).max() + 1e-7
    assert len(encode_tensor(x, codec)) < len(encode_tensor(x, "float32")) or codec == "float32"


def test_decode_rejects_oversized_and_non_finite():
    from splitee.wire import WireError

    x = np.ones((4, 4), np.float32)
    with pytest.raises(WireError) as e:
        decode_tensor(encode_tensor(x), max_bytes=10)
    assert e.value.reason == "oversized"
    x[0, 0] = np.nan
    with pytest.raises(WireError) as e:
        decode_tensor(encode_tensor(x))
    assert e.value.reason == "not_finite"


def test_policy_scopes_route_frames_to_their_own_policies(setup):
    from splitee.distortions import Distortion

    edge, _, store, cm, images = setup
    dark = Distortion("brightness", 0.2).apply(images[:4])
    recs = [frame_record(i, img) for i, img in enumerate([*images[:4], *dark])]
    by_context = bandit(cm, store, ISplitEE(), keys=PolicyKeys("global", "context"))
    edge = EdgeProcessor(edge.model, by_context)
    out = edge.process(recs)
    edge.apply(out)
    assert "global:ctx:dark" in store.policies()
    assert store.read("global:ctx:dark").pulls.sum() >= 1
    by_camera = bandit(cm, store, ISplitEE(), keys=PolicyKeys("global", "camera"))
    edge = EdgeProcessor(edge.model, by_camera)
    out = edge.process(recs[:2])
    assert set(out.deltas) <= {"global:cam-1"}
    # the cloud accepts only the policies this deployment can have
    cloud = CloudProcessor(edge.model, by_camera)
    for r in out.offloads:
        r.headers = [(k, b"global:cam-2" if k == "policy" else v) for k, v in r.headers]
    back = cloud.process(as_input(out.offloads))
    assert {d.reason for d in back.dead} <= {"bad_policy"} and not back.results


def test_camera_scope_is_bounded_by_the_allow_listed_cameras(setup):
    """A camera id nobody configured uses the global policy: no new Redis key per id, and the
    cloud accepts exactly what the edge chose."""
    from splitee import policy_setup
    from splitee.context import CONTEXTS
    from splitee.settings import Settings

    keys = policy_setup.policy_keys(Settings(policy={"scope": "camera"}), CONTEXTS)
    assert keys.cameras == {"cam-1", "cam-2"}  # by default, the cameras the settings declare
    edge, _, store, cm, images = setup
    b = bandit(
        cm, store, ISplitEE(), keys=PolicyKeys("global", "camera", cameras=frozenset({"cam-1"}))
    )
    edge = EdgeProcessor(edge.model, b)
    cams = ["cam-1", "stray-1", "stray-2"] * 2
    recs = []
    for i, (img, cam) in enumerate(zip(images[:6], cams, strict=True)):
        meta = FrameMeta(f"{cam}:t:{i:08d}", cam, 1000.0 + i)
        recs.append(InRecord(cam.encode(), encode_jpeg(img), meta.headers(), "frames", 0, i))
    out = edge.process(recs)
    assert set(out.deltas) <= {"global:cam-1", "global"}
    edge.apply(out)
    assert set(store.policies()) <= {"global:cam-1", "global"}
    cloud = CloudProcessor(edge.model, b)
    back = cloud.process(as_input(out.offloads))
    assert not back.dead and len(back.results) == len(out.offloads)


def test_context_from_image_statistics(sample_frames):
    from splitee.context import frame_context
    from splitee.distortions import Distortion

    x = sample_frames.images[::10]
    share = lambda spec, ctx: np.mean(  # noqa: E731
        [frame_context(i) == ctx for i in Distortion.parse(spec).apply(x, seed=1)]
    )
    assert share("pristine", "normal") > 0.8  # some scenes are naturally dark or smooth
    assert share("brightness:0.3", "dark") > 0.8
    assert share("blur:1.5", "blurry") > 0.8
    assert share("noise:0.2", "noisy") > 0.8


def test_threshold_adaptation_learns_arm_alpha_pairs_end_to_end(tiny_model, sample_frames):
    """With an α grid the policy's arms are (arm, α) pairs, on the edge and in the cloud."""
    from policy_store import UCB1

    cm = CostModel(tiny_model.exit_depths, gamma=0.1, mu=1.0, alpha=0.5, offload_cost=0.5)
    grid = [0.2, 0.99]
    store = MemoryStore(cm.num_arms * len(grid))
    b = bandit(cm, store, UCB1(), alpha_grid=grid)
    edge, cloud = EdgeProcessor(tiny_model, b), CloudProcessor(tiny_model, b)
    recs = [frame_record(i, sample_frames.images[i]) for i in range(24)]
    out = edge.process(recs)
    for r in out.offloads:  # the cloud learns which pair the frame played
        h = dict(r.headers)
        assert float(h["alpha"]) in grid and 0 <= int(h["pair"]) < 8
    edge.apply(out)
    cloud.apply(cloud.process(as_input(out.offloads)))
    st = store.read("global")
    assert st.pulls.sum() == 24 and float(st.t) == 24
    assert (st.pulls[:8] >= 1).all()  # UCB1 plays every pair once first
    assert st.n.sum() == 24  # one reward per frame: no side observations over pairs


def test_channel_aware_offload_cost_follows_the_link(tiny_model, sample_frames):
    """With channel.offload_cost = channel, a frame sent at low SNR costs more air time."""
    cm = CostModel(tiny_model.exit_depths, alpha=1.01)  # offload everything non-final
    cloud = CloudProcessor(
        tiny_model, bandit(cm, MemoryStore(cm.num_arms), ISplitEE()), channel_cost=True
    )
    costs = {}
    for snr in (20.0, 0.0):
        meta = FrameMeta(f"cam-1:snr:{snr}", "cam-1", 1.0, snr_db=snr)
        rec = InRecord(b"cam-1", encode_jpeg(sample_frames.images[0]), meta.headers(), "f", 0, 0)
        fresh = bandit(cm, MemoryStore(cm.num_arms), ISplitEE())  # arm 0 first, offloaded
        out = EdgeProcessor(tiny_model, fresh).process([rec])
        back = cloud.process(as_input(out.offloads))
        costs[snr] = Result.decode(back.results[0].value).cost
    base = cm.compute_cost[0] + cm.offload_cost
    assert costs[20.0] == pytest.approx(base, rel=0.3)  # arm 1's float16 features, 20 dB
    ratio = np.log2(101) / np.log2(2)  # capacity at 20 dB over capacity at 0 dB
    assert costs[0.0] - cm.compute_cost[0] == pytest.approx(cm.offload_cost * ratio, rel=0.01)


def test_edge_dead_letters_a_capture_time_ahead_of_the_record(setup):
    """A camera clock years ahead would give negative latencies: beyond the tolerance (60 s by
    default) of the record's Kafka timestamp the frame is a dead letter; behind is fine (a
    buffering camera), and a record without a timestamp is not judged."""
    edge, _, _, _, images = setup
    kafka_ts = [1000.0 - 59.0, 1001.0 - 3e8, 1002.0 + 3600.0, None]  # capture_ts is 1000 + i
    recs = []
    for i, ts in enumerate(kafka_ts):
        r = frame_record(i, images[i])
        recs.append(InRecord(r.key, r.value, r.headers, r.topic, 0, r.offset, ts))
    out = edge.process(recs)
    assert [(d.record.offset, d.reason) for d in out.dead] == [(1, "future_capture_ts")]
    assert "ahead of the record's timestamp" in out.dead[0].detail
    assert len(out.results) + len(out.offloads) == 3
