"""Fine-tune a multi-exit CIFAR ResNet: backbone and exits with a weighted sum of exit losses.

Starts from akamaster's pretrained backbone (trained on lossless CIFAR-10) and fine-tunes on the
JPEG frames, so the final exit recovers the points JPEG compression costs while the new exit
heads learn. Mixed precision (bfloat16 autocast) roughly doubles CPU throughput on CPUs with
AVX512-BF16. After training, one temperature per exit is fitted on held-out training frames
(temperature scaling, Guo et al. 2017) so that exit confidences compared with α are calibrated.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from splitee.data import Dataset
from splitee.distortions import EVAL_DISTORTIONS, Distortion
from splitee.machine import machine_description
from splitee.models import (
    MultiExitNet,
    load_pretrained,
    pretrained_file,
    save_checkpoint,
    to_input,
)


@dataclass
class TrainConfig:
    arch: str = "resnet56"
    exit_every: int = 3
    epochs: int = 8
    batch_size: int = 256
    lr_backbone: float = 0.02
    lr_heads: float = 0.1
    weight_decay: float = 5e-4
    exit_weights: list[float] | None = None  # default: 1.0 for every exit
    augment_distortions: bool = False
    distortion_prob: float = 0.5
    bf16: bool = True
    head: str = "conv1"  # exit head design, see splitee.models.multi_exit.ExitHead
    init: str | None = None  # start from this multi-exit checkpoint instead of akamaster's
    heads_only: bool = False  # freeze the backbone (and final head); train the exits only
    distill: float = 0.0  # weight of distillation from the final exit (0 = labels only)
    distill_temp: float = 3.0
    holdout: int = 2000  # training frames kept aside to fit the exit temperatures
    seed: int = 0
    limit: int | None = None  # use only the first N training frames (tests, smoke runs)
    # Noise-aware training of the cloud part (splitee.training.noise_training; needs init):
    channel_noise: bool = False
    noise_arm: int = 7  # 1-based split arm whose features cross the channel
    noise_snr_db: list[float] = field(default_factory=lambda: [-5.0, 20.0])  # uniform range
    noise_prob: float = 0.8  # fraction of frames sent through the noisy channel
    eval_distortions: list[str] = field(default_factory=lambda: list(EVAL_DISTORTIONS))


def exit_loss(
    logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor, cfg: TrainConfig
) -> torch.Tensor:
    """Cross-entropy, optionally mixed with distillation from the final exit's logits."""
    ce = F.cross_entropy(logits, labels)
    if cfg.distill <= 0:
        return ce
    t = cfg.distill_temp
    kd = F.kl_div(
        F.log_softmax(logits / t, dim=1), F.softmax(teacher / t, dim=1), reduction="batchmean"
    )
    return (1 - cfg.distill) * ce + cfg.distill * kd * t * t


def _augment(images: np.ndarray, rng: np.random.Generator, cfg: TrainConfig) -> np.ndarray:
    """Random crop (pad 4), horizontal flip and, optionally, a random distortion per sub-batch."""
    n = len(images)
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="constant")
    dx, dy = rng.integers(0, 9, n), rng.integers(0, 9, n)
    out = np.empty_like(images)
    flip = rng.random(n) < 0.5
    for i in range(n):
        crop = padded[i, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        out[i] = crop[:, ::-1] if flip[i] else crop
    if cfg.augment_distortions:
        pick = rng.random(n) < cfg.distortion_prob
        idx = np.flatnonzero(pick)
        half = len(idx) // 2
        seed = int(rng.integers(1 << 31))
        noise = Distortion("noise", float(rng.uniform(0.02, 0.25)))
        blur = Distortion("blur", float(rng.uniform(0.3, 1.7)))
        if half:
            out[idx[:half]] = noise.apply(out[idx[:half]], seed)
        if len(idx) - half:
            out[idx[half:]] = blur.apply(out[idx[half:]], seed + 1)
    return out


@torch.no_grad()
def exit_logits_all(
    model: MultiExitNet, images: np.ndarray, batch_size: int = 500, progress: bool = False
) -> torch.Tensor:
    """(N, L, classes) logits of every exit, in fp32, eval mode."""
    model.eval()
    outs = []
    for s in tqdm(range(0, len(images), batch_size), disable=not progress, desc="exits"):
        logits = model.forward_all(to_input(images[s : s + batch_size]))
        outs.append(torch.stack(logits, dim=1))
    return torch.cat(outs)


def fit_temperatures(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One temperature per exit minimising NLL on held-out frames (L-BFGS on log T)."""
    temps = []
    for k in range(logits.shape[1]):
        log_t = torch.zeros(1, requires_grad=True)
        opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)
        z = logits[:, k].float()

        def closure(
            z: torch.Tensor = z, log_t: torch.Tensor = log_t, opt: torch.optim.LBFGS = opt
        ) -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(z / log_t.exp(), labels)
            loss.backward()
            return loss

        opt.step(closure)
        temps.append(float(log_t.detach().exp().clamp(0.05, 20.0)))
    return torch.tensor(temps)


def per_exit_accuracy(
    model: MultiExitNet, test: Dataset, distortions: list[str], seed: int = 0
) -> dict[str, list[float]]:
    """Accuracy of every exit on the test set, clean and under each distortion."""
    acc: dict[str, list[float]] = {}
    labels = torch.from_numpy(test.labels)
    for spec in tqdm(distortions, desc="evaluate exits"):
        images = Distortion.parse(spec).apply(test.images, seed=seed)
        logits = exit_logits_all(model, images)
        acc[spec] = [
            round(float(v), 4) for v in (logits.argmax(2) == labels[:, None]).float().mean(0)
        ]
    return acc


def train(
    cfg: TrainConfig,
    train_set: Dataset,
    test_set: Dataset,
    pretrained_dir: Path | None,
    out: Path,
    device: torch.device | None = None,
) -> dict:
    """Train, calibrate, evaluate and write ``out`` (safetensors) plus its JSON model card."""
    device = device or torch.device("cpu")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    from splitee.models.multi_exit import default_exit_depths

    model = MultiExitNet(cfg.arch, default_exit_depths(cfg.arch, cfg.exit_every), cfg.head)
    if cfg.init:
        from splitee.models import load_checkpoint

        start = load_checkpoint(Path(cfg.init))
        if start.arch != cfg.arch or start.exit_depths != model.exit_depths:
            raise ValueError(f"{cfg.init} is {start.arch} {start.exit_depths}, not {cfg.arch}")
        model.backbone.load_state_dict(start.backbone.state_dict())
        if start.head == cfg.head:
            model.exits.load_state_dict(start.exits.state_dict())
    elif pretrained_dir is not None:
        load_pretrained(model.backbone, pretrained_file(pretrained_dir, cfg.arch))
    if cfg.heads_only:
        model.backbone.requires_grad_(False)
    if cfg.channel_noise:
        from splitee.training import noise_training as nt

        if not cfg.init:
            raise ValueError("channel-noise training starts from a multi-exit checkpoint (init)")
        cloud_params = nt.prepare(model, cfg.noise_arm - 1)
        noise_gen = torch.Generator().manual_seed(cfg.seed)
    model.to(device)
    L = model.num_exits
    weights = cfg.exit_weights or [1.0] * L
    if len(weights) != L:
        raise ValueError(f"exit_weights has {len(weights)} entries, the model has {L} exits")

    order = rng.permutation(len(train_set))
    if cfg.limit:
        order = order[: cfg.limit]
    hold = order[: cfg.holdout]
    fit = order[cfg.holdout :]
    x_all, y_all = train_set.images, train_set.labels

    groups = [{"params": model.exits.parameters(), "lr": cfg.lr_heads}]
    if cfg.channel_noise:
        groups = [{"params": cloud_params, "lr": cfg.lr_backbone}]
    elif not cfg.heads_only:
        groups.insert(0, {"params": model.backbone.parameters(), "lr": cfg.lr_backbone})
    opt = torch.optim.SGD(
        groups,
        momentum=0.9,
        nesterov=True,
        weight_decay=cfg.weight_decay,
    )
    steps_per_epoch = math.ceil(len(fit) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warm = min(100, total // 10)
    base = [g["lr"] for g in opt.param_groups]
    autocast = cfg.bf16 and device.type == "cpu"

    t0 = time.time()
    step = 0
    bar = tqdm(total=total, desc="train", unit="step")
    for epoch in range(cfg.epochs):
        model.train()
        if cfg.heads_only:
            model.backbone.eval()  # frozen: keep its BatchNorm statistics
        if cfg.channel_noise:
            nt.train_mode(model, cfg.noise_arm - 1)
        perm = rng.permutation(fit)
        for s in range(0, len(perm), cfg.batch_size):
            idx = np.sort(perm[s : s + cfg.batch_size])
            xb = to_input(_augment(x_all[idx], rng, cfg)).to(device)
            yb = torch.from_numpy(y_all[idx]).to(device)
            scale = (
                (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * step / total))
            )
            for g, b in zip(opt.param_groups, base, strict=True):
                g["lr"] = b * scale
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                if cfg.channel_noise:
                    lo, hi = cfg.noise_snr_db
                    snr = nt.sample_snr(len(idx), lo, hi, cfg.noise_prob, rng)
                    outs = nt.noisy_outputs(model, xb, cfg.noise_arm - 1, snr, noise_gen)
                elif cfg.heads_only:
                    with torch.no_grad():
                        feats, final = model.exit_features(xb)
                    outs = [*(model.exits[k](f) for k, f in enumerate(feats)), final]
                else:
                    outs = model.forward_all(xb)
            losses = [exit_loss(o.float(), yb, outs[-1].float().detach(), cfg) for o in outs]
            if cfg.heads_only:
                losses[-1] = losses[-1].detach()
            ws = weights[L - len(outs) :]  # channel noise: only the exits after the split
            loss = sum(w * lo for w, lo in zip(ws, losses, strict=True)) / sum(ws)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.update(1)
            bar.set_postfix(
                epoch=epoch, loss=f"{loss.item():.3f}", final=f"{losses[-1].item():.3f}"
            )
    bar.close()
    train_seconds = time.time() - t0

    model.cpu().eval()
    temps = torch.ones(L)
    if len(hold):
        hold_logits = exit_logits_all(model, x_all[np.sort(hold)])
        temps = fit_temperatures(hold_logits, torch.from_numpy(y_all[np.sort(hold)]))
    if cfg.channel_noise:  # the frozen edge exits keep their calibration
        temps[: cfg.noise_arm] = start.temperature[: cfg.noise_arm]
    model.temperature.copy_(temps)
    accuracy = per_exit_accuracy(model, test_set, cfg.eval_distortions, cfg.seed)
    card = {
        "format": "splitee-model-card/1",
        "architecture": {
            "arch": cfg.arch,
            "blocks": model.num_blocks,
            "exit_depths": model.exit_depths,
            "exit_head": cfg.head,
            "exit_head_layers": {
                "conv1": "conv3x3(→64)-BN-ReLU-GAP-Linear",
                "conv2": "conv3x3(→64)-BN-ReLU-conv3x3(→128)-BN-ReLU-GAP-Linear",
            }[cfg.head],
            "final_head": "GAP-Linear (pretrained, fine-tuned)",
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "initialised_from": cfg.init or (f"akamaster {cfg.arch}" if pretrained_dir else "random"),
        "training": {**asdict(cfg), "seconds": round(train_seconds, 1), "steps": step},
        "temperatures": [round(float(t), 4) for t in temps],
        "data": {"train": train_set.source, "test": test_set.source, "test_frames": len(test_set)},
        "accuracy": accuracy,
        "final_exit_accuracy": accuracy["pristine"][-1] if "pristine" in accuracy else None,
        **(
            {
                "channel_accuracy": nt.channel_accuracy(
                    model, test_set, cfg.noise_arm - 1, [-5.0, 0.0, 5.0, 10.0, 20.0], cfg.seed
                )
            }
            if cfg.channel_noise
            else {}
        ),
        "machine": machine_description(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    save_checkpoint(model, out, card)
    return card


def summarise(card: dict) -> str:
    """A short human table of per-exit accuracy."""
    lines = ["exit depth: " + " ".join(f"{d:>6}" for d in card["architecture"]["exit_depths"])]
    for spec, accs in card["accuracy"].items():
        lines.append(f"{spec:>10}: " + " ".join(f"{a * 100:6.2f}" for a in accs))
    lines.append(f"training seconds: {card['training']['seconds']}")
    return "\n".join(lines)


__all__ = ["TrainConfig", "exit_logits_all", "summarise", "train"]
