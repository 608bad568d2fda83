"""Noise-aware training of the cloud part: what is frozen, what the noisy forward returns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splitee.training import noise_training as nt


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
