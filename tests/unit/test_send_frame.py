"""Real-size frames through the edge and cloud steps, and arm 0 "send the frame" priced by bytes.

A tiny backbone declared like a user's (exits by module path) keeps the steps fast; the frames
are JPEGs of odd sizes, fitted to the model's 48×48 input at the edge.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import simplejpeg
import torch
from PIL import Image

from cloud_workers.processor import CloudProcessor
from edge_workers.processor import EdgeProcessor
from policy_store import CostModel, MemoryStore
from policy_store.policies import ISplitEE, make_policy
from policy_store.rewards import bytes_scale
from splitee import policy_setup
from splitee.models.frame_arm import FrameArmNet
from splitee.settings import load_settings
from splitee.wire import FRAME_CODEC, FrameMeta, OffloadMeta, Result, decode_tensor
from splitee.worker.records import InRecord
from tests.bandits import bandit


def _jpeg(h: int, w: int, seed: int) -> bytes:
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _record(i: int, value: bytes) -> InRecord:
    meta = FrameMeta(f"cam-1:t:{i:08d}", "cam-1", 1000.0 + i)
    return InRecord(b"cam-1", value, meta.headers(), "frames", 0, i)


def test_real_size_frames_and_the_send_frame_arm_end_to_end(tiny_real) -> None:
    model = FrameArmNet(tiny_real)
    L = model.num_exits  # 4: send frame, exit 1, exit 2, final
    jpeg_ref = 2000
    scale = bytes_scale([jpeg_ref, 8 * 24 * 24 * 2, 16 * 12 * 12 * 2, 0], jpeg_ref)
    cm = CostModel(model.exit_depths, alpha=0.99, offload_scale=scale)  # offload all but final
    store = MemoryStore(cm.num_arms)
    b = bandit(cm, store, make_policy("fixed:1"))  # 1-based: arm 0, send the frame
    edge = EdgeProcessor(model, b, codec="float16", max_frame_bytes=1 << 20)
    cloud = CloudProcessor(model, b)
    sizes = [(217, 333), (480, 640), (50, 61), (300, 200)]
    recs = [_record(i, _jpeg(h, w, i)) for i, (h, w) in enumerate(sizes)]
    out = edge.process(recs)
    assert not out.dead and not out.results
    assert [r.value for r in out.offloads] == [r.value for r in recs]  # the JPEG as received
    assert {dict(r.headers)["codec"] for r in out.offloads} == {FRAME_CODEC.encode()}
    back = cloud.process(
        [InRecord(r.key, r.value, r.headers, "offload", 0, i) for i, r in enumerate(out.offloads)]
    )
    assert not back.dead
    results = [Result.decode(r.value) for r in back.results]
    assert [r.arm for r in results] == [0] * 4
    assert [r.offload_bytes for r in results] == [len(r.value) for r in recs]
    # the cloud ran the whole network on the fitted frame: the final exit's prediction
    from splitee.images import decode_fit
    from splitee.models import to_input

    with torch.no_grad():
        x = to_input(np.stack([decode_fit(r.value, 48) for r in recs]))
        want = tiny_real(x).argmax(1).tolist()
    assert [r.prediction for r in results] == want
    assert all(r.cost == pytest.approx(cm.offload_cost * 1.0) for r in results)  # λ_0 = 0
    cloud.apply(back)
    st = store.read("global")
    assert st.pulls[0] == 4 and st.pulls[1:].sum() == 0
    assert L == 4


def test_feature_arms_offload_tensors_of_the_shifted_arm(tiny_real) -> None:
    model = FrameArmNet(tiny_real)
    cm = CostModel(model.exit_depths, alpha=0.99)
    store = MemoryStore(cm.num_arms)
    b = bandit(cm, store, make_policy("fixed:2"))
    edge, cloud = EdgeProcessor(model, b, codec="float16"), CloudProcessor(model, b)
    out = edge.process([_record(i, _jpeg(100 + i, 90, i)) for i in range(3)])
    assert len(out.offloads) == 3
    for r in out.offloads:
        assert int(dict(r.headers)["arm"]) == 1
        assert decode_tensor(r.value).shape == tiny_real.feature_shape(0)
    back = cloud.process(
        [InRecord(r.key, r.value, r.headers, "offload", 0, i) for i, r in enumerate(out.offloads)]
    )
    assert not back.dead and len(back.results) == 3


def test_a_jpeg_offload_for_a_feature_arm_is_dead_lettered(tiny_real) -> None:
    model = FrameArmNet(tiny_real)
    cm = CostModel(model.exit_depths, alpha=0.99)
    store = MemoryStore(cm.num_arms)
    b = bandit(cm, store, make_policy("fixed:1"))
    edge, cloud = EdgeProcessor(model, b), CloudProcessor(model, b)
    out = edge.process([_record(0, _jpeg(60, 80, 0))])
    (rec,) = out.offloads
    meta = FrameMeta.from_headers(rec.headers)
    om = OffloadMeta(
        arm=1, confidences=[0.0, 0.2, None, None], codec=FRAME_CODEC, policy="global", edge_ts=1e3
    )
    forged = meta.headers() + om.headers()
    back = cloud.process([InRecord(rec.key, rec.value, forged, "offload", 0, 0)])
    assert [d.reason for d in back.dead] == ["bad_codec"]


def test_settings_build_flops_costs_and_the_bytes_mode(tiny_real) -> None:
    s = load_settings(None, policy={"offload_cost_mode": "bytes", "jpeg_bytes": 1000})
    model, cm = policy_setup.model_and_costs(s, tiny_real)
    assert isinstance(model, FrameArmNet) and cm.num_arms == 4
    assert cm.compute_cost[0] == 0.0 and cm.compute_cost[-1] == pytest.approx(0.1 * 3)
    assert np.all(cm.compute_cost[1:] > 0)
    # float16 tensors with the wire header, over the 1000-byte reference JPEG
    assert cm.offload_costs[0] == pytest.approx(0.5)
    assert cm.offload_costs[1] == pytest.approx(0.5 * (8 * 24 * 24 * 2 + 24) / 1000)
    s2 = load_settings(None)
    model2, cm2 = policy_setup.model_and_costs(s2, tiny_real)
    assert model2 is tiny_real and cm2.num_arms == 3  # constant o: no send-frame arm
    assert cm2.offload_costs.tolist() == [0.5, 0.5, 0.5]


def test_split_arms_from_checkpoint_metadata(tiny_real, tmp_path) -> None:
    """Light processes (exporter, evaluator, recorder, CLI) size the bandit from the checkpoint
    without torch: its exits, plus the send-frame arm of a real-size backbone when on."""
    from splitee.models.checkpoint import save_checkpoint

    path = tmp_path / "tiny.safetensors"
    save_checkpoint(tiny_real, path)
    on = load_settings(None, model={"checkpoint": path}, policy={"offload_cost_mode": "bytes"})
    off = load_settings(None, model={"checkpoint": path})
    cifar = load_settings(None, policy={"offload_cost_mode": "bytes"})
    assert policy_setup.split_arms(on) == 4
    assert policy_setup.split_arms(off) == 3
    assert policy_setup.split_arms(cifar) == 9  # the ResNet-56: no send-frame arm


def test_frames_beyond_the_aspect_bound_are_dead_lettered_from_their_header(tiny_real) -> None:
    cm = CostModel(tiny_real.exit_depths, alpha=0.5)
    edge = EdgeProcessor(tiny_real, bandit(cm, MemoryStore(cm.num_arms), make_policy("fixed:1")))
    thin = simplejpeg.encode_jpeg(np.zeros((4, 60000, 3), np.uint8))
    wide_ok = _jpeg(10, 200, 1)  # 20:1, the default bound
    out = edge.process([_record(0, thin), _record(1, wide_ok), _record(2, _jpeg(11, 200, 2))])
    assert [(d.record.offset, d.reason) for d in out.dead] == [(0, "bad_aspect")]
    assert "60000x4 px is more elongated than 20:1" in out.dead[0].detail
    assert len(out.results) + len(out.offloads) == 2


def test_the_bytes_mode_prices_each_jpeg_at_its_own_size(tiny_real) -> None:
    """A camera's JPEGs are heavy-tailed, so a stream of large frames must not pay the
    median's price for sending them whole: the edge's revealed reward, the cloud's answer and
    the offline evaluation all price arm 0 at the frame's own bytes over policy.jpeg_bytes."""
    s = load_settings(None, policy={"offload_cost_mode": "bytes", "jpeg_bytes": 1000})
    model, cm = policy_setup.model_and_costs(s, tiny_real)
    assert cm.bytes_ref == 1000 and cm.frame_priced
    frames = [_jpeg(60, 80, 3), _jpeg(200, 150, 4)]
    assert len(frames[0]) != len(frames[1])

    class FinalArm(ISplitEE):  # runs every frame to the final exit: reveals every arm
        def pull_batch(self, stats, n):
            return np.full(n, cm.num_arms - 1)

    edge = EdgeProcessor(model, bandit(cm, MemoryStore(cm.num_arms), FinalArm()))
    out = edge.process([_record(i, f) for i, f in enumerate(frames)])
    for rec, res, f in zip(out.deltas["global"].records, out.results, frames, strict=True):
        c_final = Result.decode(res.value).confidence
        assert dict(rec.observations)[0] == pytest.approx(c_final - 0.5 * len(f) / 1000)

    b = bandit(cm, MemoryStore(cm.num_arms), make_policy("fixed:1"))  # 1-based: arm 0
    sent = EdgeProcessor(model, b).process([_record(i, f) for i, f in enumerate(frames)])
    assert [OffloadMeta.from_headers(r.headers).frame_bytes for r in sent.offloads] == [
        len(f) for f in frames
    ]
    back = CloudProcessor(model, b).process(
        [InRecord(r.key, r.value, r.headers, "offload", 0, i) for i, r in enumerate(sent.offloads)]
    )
    costs = [Result.decode(r.value).cost for r in back.results]
    assert costs == pytest.approx([0.5 * len(f) / 1000 for f in frames])


def test_the_offline_evaluation_prices_each_offload_by_its_bytes() -> None:
    """Offline as live: o·bytes/ref per frame and arm, so cloud-only costs the stream's mean
    JPEG over the median, and each frame's rewards follow its own size."""
    from splitee.evaluate.methods import Setting, cloud_only
    from splitee.evaluate.outputs import ExitOutputs

    cm = CostModel((0, 3, 9), relative_cost=(0.0, 0.3, 1.0), bytes_ref=1000)
    conf = np.array([[0.0, 0.2, 0.9], [0.0, 0.3, 0.8], [0.0, 0.95, 0.9]])
    pred = np.array([[-1, 1, 1], [-1, 2, 2], [-1, 0, 0]])
    sent = np.array([[1000.0, 200, 0], [3000, 100, 0], [500, 300, 0]])
    s = Setting("pristine", 0.0, ExitOutputs(conf, pred), np.array([1, 2, 0]), cm, None, sent)
    assert cloud_only(s).cost == pytest.approx(0.5 * 4500 / 3000)
    lam = cm.compute_cost
    assert s.rewards[:, 0] == pytest.approx(conf[:, 2] - 0.5 * sent[:, 0] / 1000)
    assert s.rewards[0, 1] == pytest.approx(0.9 - lam[1] - 0.5 * 0.2)
    assert s.rewards[2, 1] == pytest.approx(0.95 - lam[1])  # exits at the edge: no offload
    assert s.costs[:, 1] == pytest.approx(lam[1] + np.array([0.1, 0.05, 0.0]))


def test_threshold_pairs_keep_the_clouds_answers_and_bytes() -> None:
    """--alpha-grid over a bytes-priced setting with a codec: the (arm, α) pairs carry each
    offload's bytes and the cloud's answer after the codec, like the arms they copy."""
    from policy_store.offline import random_orders
    from splitee.evaluate.methods import Setting
    from splitee.evaluate.outputs import ExitOutputs
    from splitee.evaluate.thresholds import pair_setting, threshold_methods

    cm = CostModel((0, 3, 9), relative_cost=(0.0, 0.3, 1.0), bytes_ref=1000)
    conf = np.array([[0.0, 0.6, 0.9], [0.0, 0.85, 0.8], [0.0, 0.95, 0.9]])
    pred = np.array([[-1, 1, 1], [-1, 2, 2], [-1, 0, 0]])
    cloud_pred = np.array([[1, 0, 1], [2, 0, 2], [0, 0, 0]])
    cloud = ExitOutputs(np.array([[0.9, 0.7, 0.9]] * 3), cloud_pred)
    sent = np.array([[1000.0, 200, 0], [3000, 100, 0], [500, 300, 0]])
    s = Setting("pristine", 0.0, ExitOutputs(conf, pred), np.array([1, 2, 0]), cm, cloud, sent)
    p = pair_setting(s, [0.5, 0.9])
    assert p.offload_bytes.shape == (3, 6) and (p.offload_bytes[:, 3:] == sent).all()
    # arm 1 at α 0.9 offloads frame 1 (C 0.85) and the cloud's codec answer (class 0) is wrong
    assert p.correct[1, 1] and not p.correct[1, 4]
    results = threshold_methods([s], [0.5, 0.9], random_orders(3, 2, 0), 1.0)[0]
    assert [r.method for r in results] == [
        "ucb1-arm-alpha",
        "isplitee-arm-alpha",
        "best-fixed-arm-alpha",
    ]
    assert all(r.offload_bytes is not None for r in results)
