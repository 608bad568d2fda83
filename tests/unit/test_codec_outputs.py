"""The offline evaluation's codec pass: it also yields the edge's exit outputs, exactly the
numbers of the plain exit pass, so a cold evaluation runs the trunk once per setting."""

from __future__ import annotations

import numpy as np
import pytest

from splitee.checkerboard import fit_context_tables
from splitee.distortions import Distortion
from splitee.evaluate.bottleneck import cloud_outputs, compute_cloud_outputs
from splitee.evaluate.outputs import compute_outputs, exit_outputs, outputs_path
from tests.unit.test_latent_codec import bundle_on_first_arm


def _bundle(model, tmp_path):
    """A random-weight bottleneck on the model's first split arm (checkerboard tables)."""
    return bundle_on_first_arm(model, tmp_path, fit=fit_context_tables)


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


def test_the_third_evaluation_scores_offloads_after_the_codec_at_their_bytes(tiny_real, tmp_path):
    """``evaluate --model <bottleneck>``'s table: arm 0 sends the JPEG (priced at each frame's
    own size), a split arm's offloads are answered after the codec and cost their coded bytes,
    and the summary gives each codec's own top-1 beside the unsplit model's."""
    from splitee.evaluate.bottleneck import evaluate_bottleneck
    from splitee.evaluate.runner import EvalConfig, SettingOutputs

    bundle = _bundle(tiny_real, tmp_path)
    rng = np.random.default_rng(2)
    images, labels = _frames(60), rng.integers(0, 5, 60)
    jpeg = rng.integers(3000, 6000, 60).astype(np.float64)
    edge = compute_outputs(tiny_real, images, batch_size=32)
    cfg = EvalConfig(
        gamma=0.1, mu=1.0, alpha=0.5, offload_cost=0.5, beta=1.0, runs=2, seed=0,
        distortions=["pristine"],
    )  # fmt: skip
    info = {"sha256": "digest", "exit_depths": tiny_real.exit_depths}
    out = tmp_path / "bottleneck"
    summary = evaluate_bottleneck(
        [SettingOutputs(Distortion(), edge, labels)], info, tiny_real, bundle, {0: 1},
        images, jpeg, cfg, out, tmp_path / "cache", "bottleneck-digest",
    )  # fmt: skip
    assert (out / "summary.json").exists() and (out / "table.md").stat().st_size > 0
    _, cloud, size = compute_cloud_outputs(tiny_real, bundle, {0: 1}, images)
    rows = {r["method"]: r for r in summary["results"]}
    # cloud-only sends every JPEG as it is: the final exit's answers, the mean JPEG's bytes
    final_right = edge.prediction[:, -1] == labels
    assert rows["cloud-only"]["accuracy"] == pytest.approx(final_right.mean(), abs=1e-6)
    assert rows["cloud-only"]["offload_bytes"] == pytest.approx(jpeg.mean(), abs=0.5)
    # fixed-2 is split arm 1: exits where C ≥ α, the rest answered after the codec
    kept = edge.confidence[:, 0] >= cfg.alpha
    answer = np.where(kept, edge.prediction[:, 0], cloud.prediction[:, 0])
    assert rows["fixed-2"]["accuracy"] == pytest.approx((answer == labels).mean(), abs=1e-6)
    assert rows["fixed-2"]["offload_bytes"] == pytest.approx(size[~kept, 0].sum() / 60, abs=0.5)
    assert summary["model"]["arm_bytes_median"][:2] == [
        int(np.median(jpeg)),
        int(np.median(size[:, 0])),
    ]
    top1 = summary["codec_top1"]["pristine"]
    assert top1["unsplit"] == pytest.approx(final_right.mean(), abs=1e-4)
    assert top1["arms"]["1"] == pytest.approx((cloud.prediction[:, 0] == labels).mean(), abs=1e-4)
