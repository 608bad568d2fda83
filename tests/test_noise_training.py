"""Noise-aware training of the cloud part: what is frozen, what the noisy forward returns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splitee import noise_training as nt


def test_prepare_freezes_the_edge_part(tiny_model):
    m = tiny_model  # resnet20, exits after blocks 2, 4, 6 and the final head after 9
    params = nt.prepare(m, 1)  # split after block 4
    trainable = {id(p) for p in params}
    assert trainable == {id(p) for p in m.parameters() if p.requires_grad}
    for b in m.backbone.blocks[:4]:
        assert not any(p.requires_grad for p in b.parameters())
    for b in m.backbone.blocks[4:]:
        assert all(p.requires_grad for p in b.parameters())
    assert not any(p.requires_grad for e in m.exits[:2] for p in e.parameters())
    assert all(p.requires_grad for p in m.exits[2].parameters())
    assert m.backbone.linear.weight.requires_grad
    nt.train_mode(m, 1)
    assert not m.backbone.bn1.training and not m.backbone.blocks[3].training
    assert m.backbone.blocks[4].training and m.exits[2].training
    with pytest.raises(ValueError):
        nt.prepare(m, 3)


def test_noisy_outputs_and_gradients(tiny_model):
    m = tiny_model
    nt.prepare(m, 1)
    x = torch.rand(6, 3, 32, 32)
    gen = torch.Generator().manual_seed(0)
    snr = np.array([np.inf] * 6)
    outs = nt.noisy_outputs(m, x, 1, snr, gen)
    assert len(outs) == 2  # exit after block 6 and the final head
    m.eval()
    assert torch.allclose(outs[-1], m(x), atol=1e-5)  # clean link: the plain network
    noisy = nt.noisy_outputs(m, x, 1, np.full(6, -10.0), gen)
    assert not torch.allclose(noisy[-1], outs[-1])
    noisy[-1].sum().backward()
    assert m.backbone.linear.weight.grad is not None
    assert m.backbone.blocks[0].conv1.weight.grad is None


def test_sample_snr():
    rng = np.random.default_rng(0)
    s = nt.sample_snr(10_000, -5, 20, 0.8, rng)
    finite = s[np.isfinite(s)]
    assert len(finite) / len(s) == pytest.approx(0.8, abs=0.02)
    assert finite.min() >= -5 and finite.max() <= 20


def test_train_with_channel_noise_changes_only_the_cloud_part(tmp_path, sample_frames):
    from splitee.models import MultiExitNet, load_checkpoint, save_checkpoint
    from splitee.train import TrainConfig, train

    torch.manual_seed(0)
    init = tmp_path / "init.safetensors"
    start = MultiExitNet("resnet20")  # exits after blocks 3, 6 and the final head after 9
    start.temperature.copy_(torch.tensor([1.3, 1.2, 1.1]))
    save_checkpoint(start, init)
    cfg = TrainConfig(
        arch="resnet20",
        epochs=1,
        batch_size=32,
        holdout=32,
        limit=96,
        init=str(init),
        channel_noise=True,
        noise_arm=1,
        eval_distortions=["pristine"],
        bf16=False,
    )
    out = tmp_path / "noisy.safetensors"
    card = train(cfg, sample_frames, sample_frames.subset(40), None, out)
    got = load_checkpoint(out)
    before, after = start.state_dict(), got.state_dict()
    for name in ("backbone.conv1.weight", "backbone.layer1.2.conv2.weight", "exits.0.fc.weight"):
        assert torch.equal(before[name], after[name]), name  # the edge part is frozen
    for name in ("backbone.layer2.0.conv1.weight", "backbone.linear.weight", "exits.1.fc.weight"):
        assert not torch.equal(before[name], after[name]), name
    assert float(got.temperature[0]) == pytest.approx(1.3)  # frozen exit keeps its calibration
    assert set(card["channel_accuracy"]) == {"clean", "-5.0", "0.0", "5.0", "10.0", "20.0"}
