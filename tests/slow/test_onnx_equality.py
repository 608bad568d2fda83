"""Every arm of both shipped models, exported, on every frame of both shipped samples: ORT fp32
against torch. The figures the issue asks for (printed with ``-s`` as one JSON line per model):
the largest logit difference over every exit, the share of frames with the same keep/offload
decision at each arm, and with the EfficientNet's learned bottleneck the share of frames whose
latent symbols are all the same (and the share of symbols).

The latent integers cannot agree on every frame across runtimes: two float32 computations of
the same convolutions differ in their last bits, and a latent value that lands within that of
a rounding boundary (z / step = k + ½) rounds to k on one and k + 1 on the other. On the shipped
Caltech sample that happens to one symbol of ~9,400 in one frame of 303 at four of five arms
(z / step = −0.50000024). The test asserts that every difference is such a near-tie, off by
one step, and reports the shares."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from splitee.data import load_source
from splitee.files import model_alpha
from splitee.images import decode_fit, open_source
from splitee.models import load_checkpoint
from splitee.models.bottleneck_checkpoint import load_bottlenecks
from splitee.models.export_graphs import segments_of
from splitee.models.latent_codec import LatentCodec, choose_rates
from splitee.onnx_edge import OnnxEdgeModel
from splitee.onnx_export import export
from splitee.onnx_manifest import read_manifest
from tests.conftest import REPO

R56 = REPO / "assets" / "resnet56-multiexit.safetensors"
LITE0 = REPO / "assets" / "efficientnet-lite0-caltech101.safetensors"
BOTTLENECK = REPO / "assets" / "efficientnet-lite0-caltech101-bottleneck.safetensors"
BATCH = 64


def _torch_pass(model, images: np.ndarray, codec: LatentCodec | None):
    """Every exit's logits and, per bottleneck arm, the latent before rounding (z / step), in
    one pass."""
    logits, symbols = [], {}
    segs = segments_of(model)
    with torch.inference_mode():
        for i in range(0, len(images), BATCH):
            h = torch.from_numpy(images[i : i + BATCH]).permute(0, 3, 1, 2).float() / 255
            row = []
            for k, seg in enumerate(segs):
                h = seg(h)
                row.append(model.exit_logits(h, k).float())
                if codec is not None and codec.handles(k):
                    step = codec.bundle.bottlenecks.steps[codec.rates[k]]
                    z = codec.bundle.bottlenecks.codecs[k].encoder(h) / step
                    symbols.setdefault(k, []).append(z.numpy())
            logits.append(torch.stack(row, 1).numpy())
    return np.concatenate(logits), {k: np.concatenate(v) for k, v in symbols.items()}


def _figures(out_dir, model, images, alpha, codec=None) -> dict:
    m = read_manifest(out_dir)
    steps = {}
    if codec is not None:
        steps = {k: codec.bundle.bottlenecks.steps[r] for k, r in codec.rates.items()}
    onnx = OnnxEdgeModel(m, steps=steps)
    want, want_q = _torch_pass(model, images, codec)
    want_p = torch.from_numpy(want).softmax(2).numpy()
    L = model.num_exits
    fig: dict = {"frames": len(images), "max_logit_diff": 0.0, "decision": [], "prediction": []}
    latent_frames, latent_symbols, worst_tie = [], [], 0.0
    for k in range(L):
        logits, q = [], []
        for i in range(0, len(images), BATCH):
            batch = images[i : i + BATCH]
            feeds = {"frames": batch}
            if k in steps:
                feeds["step"] = np.asarray(steps[k], np.float32)
            res = onnx.sessions[k].run(None, feeds)
            logits.append(res[0])
            if k in steps:
                q.append(res[2])
        got = np.concatenate(logits)
        fig["max_logit_diff"] = max(
            fig["max_logit_diff"], float(np.abs(got - want[:, : k + 1]).max())
        )
        got_c = torch.from_numpy(got).softmax(2).numpy()[:, k].max(1)
        want_c = want_p[:, k].max(1)
        fig["decision"].append(round(float(((got_c >= alpha) == (want_c >= alpha)).mean()), 5))
        same_pred = got.argmax(2)[:, k] == want[:, k].argmax(1)
        fig["prediction"].append(round(float(same_pred.mean()), 5))
        if q:
            gq = np.concatenate(q)
            z = want_q[k]
            eq = gq == np.round(z).astype(np.int32)
            if not eq.all():  # only near-ties, one step off
                assert (np.abs(gq[~eq] - np.round(z[~eq])) == 1).all()
                tie = np.abs(np.abs(z[~eq] - np.floor(z[~eq])) - 0.5)
                worst_tie = max(worst_tie, float(tie.max()))
            latent_frames.append(round(float(eq.reshape(len(gq), -1).all(1).mean()), 5))
            latent_symbols.append(round(float(eq.mean()), 7))
    if latent_frames:
        fig["latent_same_frames"] = latent_frames
        fig["latent_same_symbols"] = latent_symbols
        fig["latent_worst_distance_from_a_tie"] = worst_tie
    return fig


def test_every_arm_of_the_cifar_resnet_on_the_whole_sample(tmp_path):
    torch.set_num_threads(1)
    export(R56, tmp_path)
    model = load_checkpoint(R56, fuse=True)
    images = load_source(REPO / "assets" / "cifar10-sample.zip", "test", cache_dir=None).images
    fig = _figures(tmp_path, model, images, model_alpha(R56) or 0.5)
    print(json.dumps({"model": R56.name, **fig}))
    assert fig["max_logit_diff"] < 1e-3
    assert min(fig["decision"]) >= 0.999


def test_every_arm_of_the_real_size_model_and_its_bottleneck(tmp_path):
    torch.set_num_threads(1)
    export(LITE0, tmp_path, bottleneck=BOTTLENECK)
    model = load_checkpoint(LITE0, fuse=True)
    bundle = load_bottlenecks(BOTTLENECK, base_path=LITE0)
    codec = LatentCodec(bundle, choose_rates(bundle, 0.01))
    src = open_source(REPO / "assets" / "caltech101-sample.zip")
    images = np.stack([decode_fit(b, model.input_size) for _, b, _ in src.iter_bytes()])
    fig = _figures(tmp_path, model, images, model_alpha(LITE0) or 0.5, codec)
    print(json.dumps({"model": LITE0.name, **fig}))
    assert fig["max_logit_diff"] < 1e-3
    assert min(fig["decision"]) >= 0.999
    # every latent that differs is a float32 rounding near-tie (z/step within 1e-4 of k + ½),
    # one step off, and such ties are rare; how many *frames* hold one depends on the latent's
    # size and the checkpoint's rate points (99.0-100 % with the shipped one, 97.4-100 % with
    # an earlier one), so it is reported (latent_same_frames), not bounded
    assert fig["latent_worst_distance_from_a_tie"] < 1e-4
    assert min(fig["latent_same_symbols"]) >= 0.99999
