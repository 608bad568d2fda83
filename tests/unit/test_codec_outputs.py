"""The offline evaluation's codec pass: it also yields the edge's exit outputs, exactly the
numbers of the plain exit pass, so a cold evaluation runs the trunk once per setting."""

from __future__ import annotations

import numpy as np
import torch

from splitee.checkerboard import fit_context_tables
from splitee.distortions import Distortion
from splitee.evaluate.bottleneck import cloud_outputs, compute_cloud_outputs
from splitee.evaluate.outputs import compute_outputs, exit_outputs, outputs_path
from splitee.files import sha256_file
from splitee.models.bottleneck import Bottlenecks, default_spec
from splitee.models.bottleneck_checkpoint import load_bottlenecks, save_bottlenecks


def _bundle(model, tmp_path):
    """A random-weight bottleneck on the model's first split arm (tables from its latents)."""
    torch.manual_seed(0)
    base = tmp_path / "base.safetensors"
    base.write_bytes(b"stand-in")
    shapes = [model.feature_shape(k) for k in range(model.num_exits - 1)]
    bn = Bottlenecks([default_spec(s) for s in shapes], [0.5, 1.0])
    h = torch.randn(64, *shapes[0])
    tables = {0: [fit_context_tables(bn.codecs[0].quantize(h, r).numpy()) for r in range(2)]}
    save_bottlenecks(bn, tables, tmp_path / "bn.safetensors", base, sha256_file(base))
    return load_bottlenecks(tmp_path / "bn.safetensors")


def _frames(n: int = 40) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, 48, 48, 3), dtype=np.uint8)


def test_the_codec_pass_gives_the_exit_pass_numbers_bit_for_bit(tiny_real, tmp_path):
    bundle = _bundle(tiny_real, tmp_path)
    images = _frames()
    edge, cloud, size = compute_cloud_outputs(tiny_real, bundle, {0: 1}, images)
    plain = compute_outputs(tiny_real, images, batch_size=32)
    assert np.array_equal(edge.confidence, plain.confidence)
    assert np.array_equal(edge.prediction, plain.prediction)
    # the arm with a codec answers after it; the others (and the final column) as the final exit
    assert np.array_equal(cloud.prediction[:, 1:], np.repeat(plain.prediction[:, -1:], 2, 1))
    assert (size[:, 0] > 0).all() and (size[:, -1] == 0).all()


def test_a_cold_codec_pass_fills_the_exit_cache_the_evaluation_reads(tiny_real, tmp_path):
    bundle = _bundle(tiny_real, tmp_path)
    images, d, cache = _frames(), Distortion.parse("noise:0.1"), tmp_path / "cache"
    edge_path = outputs_path(cache, "digest", images, d, 3)
    cloud_outputs(tiny_real, bundle, {0: 1}, images, d, 3, cache, "key", edge_path)
    assert edge_path.exists()
    cached = exit_outputs(None, images, d, 3, cache, "digest")  # a hit: no model runs
    fresh = compute_outputs(tiny_real, d.apply(images, seed=3), batch_size=32)
    assert np.array_equal(cached.confidence, fresh.confidence)
    assert np.array_equal(cached.prediction, fresh.prediction)
    # a second codec pass is a hit too, and leaves an existing exit cache as it is
    stamp = edge_path.stat().st_mtime_ns
    again, _ = cloud_outputs(tiny_real, bundle, {0: 1}, images, d, 3, cache, "key", edge_path)
    assert edge_path.stat().st_mtime_ns == stamp
    assert np.array_equal(
        again.prediction,
        cloud_outputs(tiny_real, bundle, {0: 1}, images, d, 3, None, "key")[0].prediction,
    )
