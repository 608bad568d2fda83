"""The bottleneck trainer on a tiny real-size backbone: the lazy view stack, both stages with
the deeper-feature distillation, the time budget and resuming where a run stopped."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splitee.models.bottleneck import ArmEncoder, Bottlenecks, CodecSpec, default_spec
from splitee.training.bottleneck import (
    BottleneckTrainConfig,
    ViewStack,
    _cutmix,
    _extract,
    _load_state,
    _optimizer,
    _teach,
    train_stage1,
    train_stage2,
)


def test_view_stack_reads_frames_across_views_like_their_concatenation():
    rng = np.random.default_rng(0)
    parts = [rng.normal(size=(n, 2, 3, 3)).astype(np.float16) for n in (5, 2, 4)]
    whole = np.concatenate(parts)
    stack = ViewStack(parts)
    assert len(stack) == 11 and stack.shape == whole.shape
    for idx in (np.array([0, 4, 5, 6, 7, 10]), np.array([6]), np.arange(11)):
        np.testing.assert_array_equal(stack[idx], whole[idx])
    np.testing.assert_array_equal(stack[3:9], whole[3:9])


@pytest.fixture
def tiny(tiny_real):
    for p in tiny_real.parameters():
        p.requires_grad_(False)  # the backbone stays frozen, as in train_bottlenecks
    return tiny_real


def test_distillation_with_deeper_features_trains_within_its_budget_and_resumes(tiny, tmp_path):
    """Arm 1 of the tiny model: stage 1 then 1.5 s of distillation against the final logits
    and arm 2's cached tensor; the state records the steps and time, and a second call with
    the same budget finds it spent and changes nothing."""
    images = np.random.default_rng(0).integers(0, 256, (40, 48, 48, 3), dtype=np.uint8)
    feats, logits = _extract(tiny, images, 8, "cache")
    cfg = BottleneckTrainConfig(
        stage1_epochs=1, stage1_frames=40, batch_size=8, stage2_batch=8, stage2_seconds=[1.5]
    )
    bn = Bottlenecks([default_spec(tiny.feature_shape(k)) for k in range(2)], cfg.steps)
    codec, state = bn.codecs[0], tmp_path / "arm0.safetensors"
    stack = ViewStack([feats[0]])
    info = train_stage1(codec, stack, cfg, state)
    assert info["stage1_epoch"] == 1 and np.isfinite(info["history"][0]["mse"])

    before = {n: p.detach().clone() for n, p in codec.decoder.named_parameters()}
    info = train_stage2(tiny, 0, codec, stack, {1: ViewStack([feats[1]])}, logits, cfg, state)
    assert info["stage2_steps"] > 0
    assert 1.5 <= info["stage2_seconds"] < 10  # stops at its budget, not at a 30 s block
    assert np.isfinite(info["stage2_kd"]).all()
    assert any(not torch.equal(p, before[n]) for n, p in codec.decoder.named_parameters())

    again = Bottlenecks([default_spec(tiny.feature_shape(k)) for k in range(2)], cfg.steps)
    resumed = train_stage2(
        tiny, 0, again.codecs[0], stack, {1: ViewStack([feats[1]])}, logits, cfg, state
    )
    assert resumed["stage2_steps"] == info["stage2_steps"]  # nothing left to do
    saved = _load_state(state, again.codecs[0], _optimizer(again.codecs[0], cfg.lr))
    assert saved["stage2_steps"] == info["stage2_steps"]
    for n, p in again.codecs[0].state_dict().items():
        torch.testing.assert_close(p, codec.state_dict()[n])
    assert info["stage2_runs"] == [{"steps": cfg.steps, "from_seconds": 0, "mix": cfg.stage2_mix}]

    # resumed with a longer budget and other rate points: a warm start, and the state says so
    other = BottleneckTrainConfig(
        stage1_epochs=1,
        stage1_frames=40,
        batch_size=8,
        stage2_batch=8,
        stage2_seconds=[3.0],
        steps=[2.0, 8.0],
    )
    warm = train_stage2(
        tiny, 0, again.codecs[0], stack, {1: ViewStack([feats[1]])}, logits, other, state
    )
    assert warm["stage2_steps"] > info["stage2_steps"]
    spent = round(info["stage2_seconds"])
    assert warm["stage2_runs"] == [
        {"steps": cfg.steps, "from_seconds": 0, "mix": cfg.stage2_mix},
        {"steps": [2.0, 8.0], "from_seconds": spent, "mix": cfg.stage2_mix},
    ]

    # continued on cut-mixed tensors taught on the fly: it trains, and the state says so
    mixing = BottleneckTrainConfig(
        stage1_epochs=1,
        stage1_frames=40,
        batch_size=8,
        stage2_batch=8,
        stage2_seconds=[4.5],
        steps=[2.0, 8.0],
        stage2_mix=1.0,
    )
    mixed = train_stage2(
        tiny, 0, again.codecs[0], stack, {1: ViewStack([feats[1]])}, logits, mixing, state
    )
    assert mixed["stage2_steps"] > warm["stage2_steps"] and np.isfinite(mixed["stage2_kd"]).all()
    assert mixed["stage2_runs"][-1] == {
        "steps": [2.0, 8.0],
        "from_seconds": round(warm["stage2_seconds"]),
        "mix": 1.0,
    }


def test_default_spec_keeps_the_resolution_up_to_28_and_reads_older_specs():
    """EfficientNet-Lite0's split tensors: the 56×56 one is halved, the others keep their
    side; one 3×3 in the encoder where the latent is 14×14 or larger. A spec written before
    the encoder's depth was recorded loads with the two 3×3 convolutions it had."""
    shapes = [(24, 56, 56), (40, 28, 28), (80, 14, 14), (112, 14, 14), (192, 7, 7)]
    specs = [default_spec(s) for s in shapes]
    assert [s.latent_shape for s in specs] == [
        (32, 28, 28),
        (32, 28, 28),
        (48, 14, 14),
        (48, 14, 14),
        (64, 7, 7),
    ]
    assert [s.convs for s in specs] == [1, 1, 1, 1, 2]
    for s in specs:
        assert CodecSpec.from_json(s.to_json()) == s
        convs = sum(isinstance(m, torch.nn.Conv2d) for m in ArmEncoder(s).net)
        assert convs == 1 + s.convs  # the 1×1 and the 3×3s
    old = {"in_shape": [192, 7, 7], "down": 0, "hidden": 128, "latent": 64}
    assert CodecSpec.from_json(old) == specs[-1] and specs[-1].tag == "d0h128l64"


def test_a_cut_mixed_tensor_is_taught_by_the_frozen_suffix(tiny):
    """A cut-mixed batch keeps its shape and takes one box from another frame; the teacher of
    an unmixed tensor is exactly the cached one (the same frozen segments), so mixing changes
    the inputs, never what the teacher means."""
    images = np.random.default_rng(1).integers(0, 256, (6, 48, 48, 3), dtype=np.uint8)
    feats, logits = _extract(tiny, images, 6, "cache")
    h = torch.from_numpy(feats[0].astype(np.float32))
    mixed = _cutmix(h, np.random.default_rng(0))
    assert mixed.shape == h.shape and not torch.equal(mixed, h)
    changed = (mixed != h).any(dim=1)  # (N, H, W): where a frame took another's values
    assert changed.any(dim=0).sum() < h.shape[-2] * h.shape[-1]  # a box, not the whole map
    deep, t = _teach(tiny, 0, h, {1})
    torch.testing.assert_close(t, torch.from_numpy(logits), atol=2e-2, rtol=1e-2)
    torch.testing.assert_close(
        deep[1], torch.from_numpy(feats[1].astype(np.float32)), atol=2e-2, rtol=1e-2
    )


def test_small_tensors_get_a_scalar_codec_that_quantizes_the_standardised_tensor():
    """arm_spec gives the 14×14 and 7×7 tensors the scalar codec (its latent is the tensor)
    and the larger ones a learned one; the scalar codec's symbols are the standardised tensor
    in steps of Δ / gain standard deviations, its decoder inverts that up to half a step, and
    its spec survives the checkpoint's JSON (a learned spec's JSON stays as older readers
    know it)."""
    from splitee.models.bottleneck import ArmCodec, scalar_spec
    from splitee.training.bottleneck import arm_spec

    cfg = BottleneckTrainConfig()
    shapes = [(24, 56, 56), (40, 28, 28), (80, 14, 14), (112, 14, 14), (192, 7, 7)]
    kinds = [arm_spec(s, cfg).kind for s in shapes]
    assert kinds == ["learned", "learned", "scalar", "scalar", "scalar"]
    assert {arm_spec(s, BottleneckTrainConfig(scalar_side=0)).kind for s in shapes} == {"learned"}
    spec = scalar_spec((8, 6, 6), gain=3.0)
    assert spec.latent_shape == (8, 6, 6) and spec.tag == "scalar-g3"
    assert CodecSpec.from_json(spec.to_json()) == spec
    assert "kind" not in default_spec((8, 6, 6)).to_json()
    with pytest.raises(ValueError):
        CodecSpec(in_shape=(8, 6, 6), down=0, hidden=0, latent=4, kind="scalar")
    with pytest.raises(ValueError):
        CodecSpec(in_shape=(8, 6, 6), down=0, hidden=0, latent=8, kind="zip")

    codec = ArmCodec(spec, [1.0, 6.0]).eval()
    mean, std = torch.linspace(-1, 1, 8), torch.linspace(0.5, 2, 8)
    codec.set_statistics(mean, std)
    h = torch.randn(2, 8, 6, 6) * std.view(1, 8, 1, 1) + mean.view(1, 8, 1, 1)
    assert sum(p.numel() for p in codec.encoder.parameters()) == 0  # nothing to train
    for rate, step in enumerate(codec.steps):
        q = codec.quantize(h, rate)
        expected = torch.round((h - mean.view(1, 8, 1, 1)) / std.view(1, 8, 1, 1) * 3 / step)
        assert torch.equal(q, expected.to(torch.int32))
        err = (codec.dequantize(q, rate) - h).abs() / std.view(1, 8, 1, 1)
        assert float(err.max()) <= step / 3 / 2 + 1e-5
    bn = Bottlenecks([default_spec((8, 12, 12)), spec], [1.0])
    assert [bn.trainable(k) for k in range(2)] == [True, False]


def test_a_whole_run_trains_the_learned_arm_and_codes_the_scalar_one(tiny, tmp_path, monkeypatch):
    """train_bottlenecks on the tiny backbone: arm 1 (24×24) gets a learned codec and trains,
    arm 2 (12×12) the scalar codec with nothing to train; the checkpoint holds both with their
    tables and the card measures both. A second run finds everything done and writes the same
    figures."""
    from splitee.data import Dataset
    from splitee.models import backbones
    from splitee.models.bottleneck_checkpoint import load_bottlenecks
    from splitee.models.checkpoint import save_checkpoint
    from splitee.training.bottleneck import train_bottlenecks

    monkeypatch.setattr(backbones, "_REGISTRY", dict(backbones._REGISTRY))
    backbones.register_custom(
        "tiny", "tests.unit.test_backbones:tiny_backbone", ["stage1", "stage2"], 48
    )
    model_path = tmp_path / "tiny.safetensors"
    save_checkpoint(tiny, model_path)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (24, 48, 48, 3), dtype=np.uint8)
    train = Dataset(images=frames[:16], labels=np.arange(16) % 5, source="t")
    test = Dataset(images=frames[16:], labels=np.arange(8) % 5, source="t")
    cfg = BottleneckTrainConfig(
        steps=[1.0, 4.0],
        stage1_epochs=1,
        stage1_frames=16,
        batch_size=8,
        stage2_batch=8,
        stage2_seconds=[1.0, 1.0],
        views=1,
        distorted_frames=0,
        extract_batch=8,
        test_limit=None,
    )
    out = tmp_path / "bn.safetensors"
    card = train_bottlenecks(model_path, cfg, train, test, out, tmp_path / "work")
    assert [a["arm"] for a in card["arms"]] == [1, 2]
    assert card["arms"][0]["training"]["stage2_steps"] > 0
    assert card["arms"][1]["training"] == {"kind": "scalar", "gain": 3.0}
    assert card["arms"][1]["encoder_flops"] == 0
    assert all(len(a["rates"]) == 2 and a["rates"][0]["bytes_median"] > 0 for a in card["arms"])
    bundle = load_bottlenecks(out, model_path)
    assert [c.spec.kind for c in bundle.bottlenecks.codecs] == ["learned", "scalar"]
    assert bundle.arms == [0, 1] and all(len(t) == 2 for t in bundle.tables.values())
    again = train_bottlenecks(model_path, cfg, train, test, out, tmp_path / "work")
    assert [a["rates"] for a in again["arms"]] == [a["rates"] for a in card["arms"]]
