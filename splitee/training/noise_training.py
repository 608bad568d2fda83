"""Noise-aware training of the cloud part (``splitee train --channel-noise``, algorithms.md §5).

The network is cut at one split arm k (1-based ``TrainConfig.noise_arm``). The edge part — stem,
blocks 1 … ℓ_k and exits 1 … k — is frozen (weights and BatchNorm statistics), so every edge
prediction and every offloaded tensor stays what it was. The cloud part — blocks ℓ_k+1 … B,
the final head and the exits after arm k (they sit on the retrained blocks) — is trained on the
prefix's features after the analog channel (:func:`splitee.link.analog`) at an SNR drawn per
frame uniformly in dB from ``noise_snr_db``; a fraction ``1 - noise_prob`` of frames crosses a
clean link, so the cloud part stays accurate on pristine features too **(ours)**.
"""

from __future__ import annotations

import numpy as np
import torch

from splitee.data import Dataset
from splitee.link import analog
from splitee.models import MultiExitNet, to_input


def cloud_modules(model: MultiExitNet, k: int) -> list[torch.nn.Module]:
    """The modules trained with channel noise when the split is arm ``k`` (0-based)."""
    blocks = model.backbone.blocks[model.exit_depths[k] :]
    return [*blocks, model.backbone.linear, *model.exits[k + 1 :]]


def prepare(model: MultiExitNet, k: int) -> list[torch.nn.Parameter]:
    """Freeze everything but the cloud part; return its parameters."""
    if not 0 <= k < model.num_exits - 1:
        raise ValueError(f"noise arm must lie in 1..{model.num_exits - 1}")
    model.requires_grad_(False)
    params: list[torch.nn.Parameter] = []
    for m in cloud_modules(model, k):
        m.requires_grad_(True)
        params.extend(m.parameters())
    return params


def train_mode(model: MultiExitNet, k: int) -> None:
    """Eval mode for the frozen edge part (BatchNorm statistics kept), train for the cloud."""
    model.eval()
    for m in cloud_modules(model, k):
        m.train()


def sample_snr(n: int, lo: float, hi: float, prob: float, rng: np.random.Generator) -> np.ndarray:
    """Per-frame SNR in dB, uniform in [lo, hi]; ``inf`` (a clean link) with prob 1 - prob."""
    snr = rng.uniform(lo, hi, n)
    return np.where(rng.random(n) < prob, snr, np.inf)


def noisy_outputs(
    model: MultiExitNet,
    x: torch.Tensor,
    k: int,
    snr_db: np.ndarray,
    generator: torch.Generator,
) -> list[torch.Tensor]:
    """Logits of exits k+1 … L-1 (0-based; the last is the final head) on channel features."""
    with torch.no_grad():
        h = model.prefix(x, k)
        finite = np.isfinite(snr_db)
        if finite.any():
            idx = torch.from_numpy(np.flatnonzero(finite)).to(h.device)
            rx, _ = analog(h[idx], snr_db[finite], generator)
            h = h.clone()
            h[idx] = rx.to(h.dtype)
    outs: list[torch.Tensor] = []
    exit_at = {d: i for i, d in enumerate(model.exit_depths)}
    for depth in range(model.exit_depths[k] + 1, model.num_blocks + 1):
        h = model.backbone.blocks[depth - 1](h)
        j = exit_at.get(depth)
        if j is not None:
            outs.append(model.exit_logits(h, j))
    return outs


@torch.inference_mode()
def channel_accuracy(
    model: MultiExitNet, test: Dataset, k: int, snrs: list[float], seed: int = 0
) -> dict[str, float]:
    """Final-exit accuracy when arm k's features cross the analog channel, per SNR (dB)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    correct = {s: 0 for s in ["clean", *snrs]}
    labels = torch.from_numpy(test.labels)
    for s0 in range(0, len(test), 500):
        y = labels[s0 : s0 + 500]
        h = model.prefix(to_input(test.images[s0 : s0 + 500]), k)
        correct["clean"] += int((model.suffix(h, k).argmax(1) == y).sum())
        for s in snrs:
            rx, _ = analog(h, s, gen)
            correct[s] += int((model.suffix(rx, k).argmax(1) == y).sum())
    return {str(s): round(c / max(len(test), 1), 4) for s, c in correct.items()}


__all__ = ["channel_accuracy", "noisy_outputs", "prepare", "sample_snr", "train_mode"]
