"""Exported graphs on ONNX Runtime (fp32) against the torch models on the shipped samples.

Both shipped models are exported once per module, a few arms only (the ResNet's arm 3, which
offloads, and its final arm; the EfficientNet's arm 2 through its learned bottleneck), then on
the first frames of the samples: every exit's logits within 1e-3, the same keep/offload
decision and the same integer latent on ≥ 99.9 % of frames, the cloud graphs' logits within
1e-3 of the torch suffix, the latent messages byte for byte, the edge step's offloads byte for
byte on both runtimes, and the same cost model from the manifest as from the model.
tests/slow/test_onnx_equality.py runs every arm on every frame of both samples (and says why
the latent integers cannot agree on every frame).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from splitee.data import load_source
from splitee.files import model_alpha
from splitee.images import decode_fit, open_source
from splitee.latent_messages import LatentWriter
from splitee.models import load_checkpoint
from splitee.models.bottleneck_checkpoint import load_bottlenecks
from splitee.models.latent_codec import LatentCodec, choose_rates
from splitee.models.torch_edge import TorchEdgeModel
from splitee.onnx_edge import OnnxEdgeModel, session
from splitee.onnx_export import export
from splitee.onnx_manifest import ManifestError, read_manifest
from tests.conftest import REPO

R56 = REPO / "assets" / "resnet56-multiexit.safetensors"
LITE0 = REPO / "assets" / "efficientnet-lite0-caltech101.safetensors"
BOTTLENECK = REPO / "assets" / "efficientnet-lite0-caltech101-bottleneck.safetensors"
CIFAR = REPO / "assets" / "cifar10-sample.zip"
CALTECH = REPO / "assets" / "caltech101-sample.zip"
# Lite0: a learned codec's arm (2) and a scalar codec's (3), 0-based
R56_ARMS, LITE0_ARMS = [2, 8], [1, 2]
CIFAR_FRAMES, CALTECH_FRAMES = 256, 32
ATOL = 1e-3
AGREE = 0.999
#: how close to a half-integer a latent must be for the runtimes to round it apart
TIE = 1e-4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def r56(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx-r56")
    export(R56, out, arms=R56_ARMS)
    images = load_source(CIFAR, "test", cache_dir=None).images[:CIFAR_FRAMES]
    return read_manifest(out), load_checkpoint(R56, fuse=True), images


@pytest.fixture(scope="module")
def lite0(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx-lite0")
    export(LITE0, out, bottleneck=BOTTLENECK, arms=LITE0_ARMS)
    model = load_checkpoint(LITE0, fuse=True)
    bundle = load_bottlenecks(BOTTLENECK, base_path=LITE0)
    codec = LatentCodec(bundle, choose_rates(bundle, 0.01))
    src = open_source(CALTECH)
    images = []
    for _, data, _ in src.iter_bytes():
        images.append(decode_fit(data, model.input_size))
        if len(images) == CALTECH_FRAMES:
            break
    return read_manifest(out), model, codec, np.stack(images)


def _torch_logits(model, images: np.ndarray, k: int) -> np.ndarray:
    with torch.inference_mode():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        return torch.stack(model.forward_all(x)[: k + 1], 1).numpy()


def _agreement(torch_model, onnx_model, images, arm: int, alpha: float) -> dict:
    arms = np.full(len(images), arm)
    t = torch_model.run_frames(images, arms, True)
    o = onnx_model.run_frames(images, arms, True)
    seen = ~np.isnan(t.confidence)
    assert (seen == ~np.isnan(o.confidence)).all()
    return {
        "t": t,
        "o": o,
        "decision": float(
            ((t.confidence[:, arm] >= alpha) == (o.confidence[:, arm] >= alpha)).mean()
        ),
        "conf": float(np.abs(t.confidence[seen] - o.confidence[seen]).max()),
        "prediction": float((t.prediction == o.prediction).mean()),
    }


def test_manifest_says_what_was_exported(r56, lite0):
    m, model, _ = r56
    assert m.exit_depths == model.exit_depths and not m.complete
    assert [a.arm for a in m.arms if a.edge] == R56_ARMS
    assert m.arms[2].offload == "split" and m.arms[2].split_shape == model.feature_shape(2)
    assert m.arms[8].offload is None and m.arms[8].cloud is None
    assert m.temperatures == [float(t) for t in model.temperature]
    ml = lite0[0]
    assert ml.bottleneck is not None and ml.real_size and ml.input_size == 224
    assert ml.arms[1].offload == "symbols" and ml.facts.relative_costs[-1] == 1.0
    assert len(ml.sha256) == 64 and ml.checkpoint == LITE0.name


def test_cifar_edge_graphs_match_torch(r56):
    m, model, images = r56
    onnx = OnnxEdgeModel(m)
    alpha = model_alpha(R56) or 0.5
    for k in R56_ARMS:
        logits = session(m.path(m.arms[k].edge)).run(["logits"], {"frames": images})[0]
        np.testing.assert_allclose(logits, _torch_logits(model, images, k), atol=ATOL, rtol=0)
        a = _agreement(TorchEdgeModel(model), onnx, images, k, alpha)
        assert a["decision"] >= AGREE and a["prediction"] >= AGREE, a
        if k < model.num_exits - 1:
            (ti, tf), (oi, of) = a["t"].features[k], a["o"].features[k]
            assert (ti == oi).all()
            np.testing.assert_allclose(of, tf, atol=ATOL, rtol=0)


def test_cifar_cloud_graph_matches_the_torch_suffix(r56):
    m, model, images = r56
    k = R56_ARMS[0]
    with torch.inference_mode():
        x = torch.from_numpy(images[:128]).permute(0, 3, 1, 2).float() / 255
        h = model.prefix(x, k)
        want = model.suffix(h, k).numpy()
    got = session(m.path(m.arms[k].cloud)).run(None, {"split": h.numpy()})[0]
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


def test_real_size_edge_graphs_and_latents_match_torch(lite0):
    m, model, codec, images = lite0
    steps = {k: codec.bundle.bottlenecks.steps[r] for k, r in codec.rates.items()}
    onnx = OnnxEdgeModel(m, steps=steps)
    alpha = model_alpha(LITE0) or 0.5
    for k in LITE0_ARMS:
        feeds = {"frames": images}
        if m.arms[k].offload == "symbols":
            feeds["step"] = np.asarray(steps[k], np.float32)
        logits = session(m.path(m.arms[k].edge)).run(["logits"], feeds)[0]
        np.testing.assert_allclose(logits, _torch_logits(model, images, k), atol=ATOL, rtol=0)
        a = _agreement(TorchEdgeModel(model, codec), onnx, images, k, alpha)
        assert a["decision"] >= AGREE and a["prediction"] >= AGREE, a
    k = LITE0_ARMS[0]
    a = _agreement(TorchEdgeModel(model, codec), onnx, images, k, alpha)
    (_, tq), (_, oq) = a["t"].features[k], a["o"].features[k]
    assert oq.dtype == np.int32 and oq.shape == tq.shape
    # the same integers, except where the latent before rounding is a float32 hair from a
    # half-integer (the two runtimes add in different orders): one step apart, at a tie
    step = codec.bundle.bottlenecks.steps[codec.rates[k]]
    with torch.inference_mode():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        z = (codec.bundle.bottlenecks.codecs[k].encoder(model.prefix(x, k)) / step).numpy()
    off = tq != oq
    assert off.mean() < 1e-4, f"{off.sum()} of {off.size} symbols differ"
    assert (np.abs(tq[off] - oq[off]) == 1).all()
    assert (np.abs(np.abs(z[off] - np.floor(z[off])) - 0.5) < TIE).all()
    # the torch-free writer, from the export's copy of the tables, writes the same messages
    writer = LatentWriter(m.bottleneck.tables(m.directory), codec.rates)
    assert writer.messages(oq[:8], k) == codec.messages(oq[:8], k)


@pytest.mark.parametrize("k", LITE0_ARMS)
def test_real_size_cloud_graph_from_latents_matches_torch(lite0, k):
    m, model, codec, images = lite0
    step = codec.bundle.bottlenecks.steps[codec.rates[k]]
    with torch.inference_mode():
        x = torch.from_numpy(images[:16]).permute(0, 3, 1, 2).float() / 255
        q = torch.from_numpy(codec.quantize(model.prefix(x, k), k))
        want = model.suffix(codec.reconstruct(q, k), k).numpy()
    feeds = {"symbols": q.numpy(), "step": np.asarray(step, np.float32)}
    got = session(m.path(m.arms[k].cloud)).run(None, feeds)[0]
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


def test_dynamic_batch_and_bad_input(r56):
    m, _, images = r56
    onnx = OnnxEdgeModel(m)
    for n in (1, 3, 17):
        out = onnx.run_frames(images[:n], np.full(n, 2), side=False)
        assert out.features[2][1].shape[0] == n and np.isnan(out.confidence[:, :2]).all()
    with pytest.raises(ValueError, match="no edge graph"):
        onnx.run_frames(images[:2], np.array([0, 2]), side=True)
    with pytest.raises(ValueError, match="uint8"):
        onnx.run_frames(images[:2].astype(np.float32), np.array([2, 2]), side=True)


def test_a_bad_manifest_is_refused(r56, tmp_path):
    m = r56[0]
    d = json.loads((m.directory / "manifest.json").read_text())
    for field, value in [("format", "x"), ("arms", [])]:
        bad = dict(d, **{field: value})
        (tmp_path / "manifest.json").write_text(json.dumps(bad))
        with pytest.raises(ManifestError):
            read_manifest(tmp_path)
    escape = json.loads(json.dumps(d))
    escape["arms"][2]["edge"] = "../../etc/passwd"
    (tmp_path / "manifest.json").write_text(json.dumps(escape))
    with pytest.raises(ManifestError, match="not a file name"):
        read_manifest(tmp_path)


def _records(n: int) -> list:
    from splitee.wire import FrameMeta
    from splitee.worker.records import InRecord

    out = []
    for i, (_, data, _) in enumerate(open_source(CALTECH).iter_bytes()):
        if i == n:
            break
        meta = FrameMeta(f"cam-1:t:{i:08d}", "cam-1", 1000.0 + i)
        out.append(InRecord(b"cam-1", data, meta.headers(), "frames", 0, i))
    return out


def test_the_edge_step_on_onnxruntime_offloads_what_torch_does(lite0):
    """The edge step with the send-frame arm in front and a bottleneck arm, on both runtimes:
    the same offloads byte for byte (a latent message may differ only by a symbol rounded
    apart at a float32 tie), which the torch cloud step answers without a dead letter."""
    from cloud_workers.processor import CloudProcessor
    from edge_workers.processor import EdgeProcessor
    from policy_store import CostModel, MemoryStore
    from policy_store.policies import make_policy
    from splitee.models.frame_arm import FrameArmNet
    from splitee.worker.records import InRecord
    from tests.bandits import bandit

    m, model, codec, _ = lite0
    wrapped = FrameArmNet(model)
    steps = {k: codec.bundle.bottlenecks.steps[r] for k, r in codec.rates.items()}
    onnx = OnnxEdgeModel(m, send_frame=True, steps=steps)
    writer = LatentWriter(m.bottleneck.tables(m.directory), codec.rates, 1)
    shifted = codec.shifted(1)
    cm = CostModel(wrapped.exit_depths, alpha=1.01)  # every frame offloads at its arm
    recs = _records(12)
    for arm in (0, LITE0_ARMS[0] + 1):  # 1-based pick = worker arm + 1
        b = bandit(cm, MemoryStore(cm.num_arms), make_policy(f"fixed:{arm + 1}"))
        t = EdgeProcessor(wrapped, b, latent=shifted).process(recs)
        o = EdgeProcessor(onnx, b, latent=writer).process(recs)
        assert not o.dead and not o.results and len(o.offloads) == len(recs)
        for got, want in zip(o.offloads, t.offloads, strict=True):
            if got.value != want.value:  # only a latent one symbol off at a float32 tie
                assert arm > 0
                gs, ws = shifted.symbols(got.value, arm), shifted.symbols(want.value, arm)
                assert (gs != ws).mean() < 1e-4 and (np.abs(gs - ws) <= 1).all()
        back = CloudProcessor(wrapped, b, latent=shifted).process(
            [InRecord(r.key, r.value, r.headers, "offload", 0, i) for i, r in enumerate(o.offloads)]
        )
        assert not back.dead and len(back.results) == len(recs)


def test_the_edge_modules_import_without_torch():
    """What the edge worker imports on the onnxruntime runtime never pulls torch in."""
    import subprocess
    import sys

    code = (
        "import sys, importlib.abc\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision'):\n"
        "            raise ImportError('torch is not installed here')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import splitee.cli, edge_workers.app, edge_workers.processor, splitee.onnx_edge\n"
        "import splitee.policy_setup, splitee.worker.runtime, splitee.latent_messages\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


def test_the_manifest_prices_the_arms_as_the_torch_workers_do(lite0, r56):
    """A torch-free edge prices its arms from the manifest, the torch cloud from the model:
    the same cost model (the bottleneck's bytes and encoder FLOPs, the send-frame arm, α)."""
    from splitee import policy_setup
    from splitee.latent_messages import choose_rates as card_rates
    from splitee.onnx_manifest import latent_facts
    from splitee.settings import load_settings

    m, model, _, _ = lite0
    s = load_settings(
        None,
        policy={"offload_cost_mode": "bytes", "jpeg_bytes": 12844},
        model={"checkpoint": str(LITE0), "bottleneck": str(BOTTLENECK)},
    )
    _, want = policy_setup.model_and_costs(s, model)
    rates = card_rates(m.bottleneck.card, m.bottleneck.arms, s.model.bottleneck_max_drop)
    send, got = policy_setup.costs_from_facts(s, latent_facts(m, rates))
    assert send and got.num_arms == want.num_arms == model.num_exits + 1
    np.testing.assert_allclose(got.compute_cost, want.compute_cost, rtol=1e-12)
    np.testing.assert_allclose(got.offload_costs, want.offload_costs, rtol=1e-12)
    assert got.alpha == want.alpha
    m56, model56, _ = r56
    s56 = load_settings(None, model={"checkpoint": str(R56)})
    _, want56 = policy_setup.model_and_costs(s56, model56)
    _, got56 = policy_setup.costs_from_facts(s56, m56.facts)
    assert got56.depths == want56.depths and got56.alpha == want56.alpha
    np.testing.assert_array_equal(got56.compute_cost, want56.compute_cost)
    np.testing.assert_array_equal(got56.offload_costs, want56.offload_costs)


def test_an_export_of_another_model_is_refused(r56, lite0):
    """The edge refuses to start on graphs of another checkpoint or bottleneck setting than
    the cloud's (model.checkpoint, model.bottleneck): it would price, code and key for a
    model nobody else runs."""
    from splitee.policy_setup import check_export
    from splitee.settings import load_settings

    m56, ml = r56[0], lite0[0]
    check_export(load_settings(None, model={"checkpoint": str(R56)}), m56)
    with pytest.raises(ManifestError, match="run `splitee export` again"):
        check_export(load_settings(None, model={"checkpoint": str(LITE0)}), m56)
    with pytest.raises(ManifestError, match="bottleneck"):
        check_export(load_settings(None, model={"checkpoint": str(LITE0)}), ml)
    absent = load_settings(None, model={"checkpoint": "/nonexistent/model.safetensors"})
    check_export(absent, m56)  # an edge box without the checkpoint takes the manifest's word


def test_int8_graphs_keep_the_first_exits_prefix_in_float(tmp_path):
    """``--int8``: the int8 edge graph is written beside the fp32 one and recorded in the
    manifest; everything exit 1's head reads from stays float32 (no quantized tensor feeds
    it), the rest is quantized, and its decisions follow the fp32 graph's."""
    import onnx

    from splitee.onnx_quantize import first_exit_prefix

    images = load_source(CIFAR, "test", cache_dir=None).images[:CIFAR_FRAMES]
    out = tmp_path / "int8"
    export(R56, out, arms=[2], calibration=images[:64])
    m = read_manifest(out)
    arm = next(a for a in m.arms if a.arm == 2)
    assert arm.edge_int8 is not None
    graph = onnx.load(str(m.path(arm.edge_int8))).graph
    dq = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    prefix = set(first_exit_prefix(onnx.load(str(m.path(arm.edge))).graph))
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert prefix and any(n.name in prefix for n in convs)
    for n in convs:  # a quantized conv reads dequantized inputs; a float one never does
        assert any(i in dq for i in n.input) == (n.name not in prefix), n.name
    fp32 = session(m.path(arm.edge)).run(["logits"], {"frames": images})[0]
    int8 = session(m.path(arm.edge_int8)).run(["logits"], {"frames": images})[0]
    assert (fp32.argmax(2) == int8.argmax(2)).mean() >= 0.9
