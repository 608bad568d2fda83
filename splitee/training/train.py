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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from splitee.settings import Settings


@dataclass(kw_only=True)
class TrainConfig:
    """``splitee train`` for a CIFAR ResNet. The fields without a default come from the
    settings (:meth:`from_settings`); the others' defaults are here and nowhere else."""

    arch: str
    exit_every: int
    noise_arm: int  # 1-based split arm whose features cross the channel (channel noise)
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
    noise_snr_db: list[float] = field(default_factory=lambda: [-5.0, 20.0])  # uniform range
    noise_prob: float = 0.8  # fraction of frames sent through the noisy channel
    eval_distortions: list[str] = field(default_factory=lambda: list(EVAL_DISTORTIONS))

    @classmethod
    def from_settings(cls, s: Settings, **given: Any) -> TrainConfig:
        """model.arch, model.exit_every and channel.arm, overridden by ``given``."""
        values = {
            "arch": s.model.arch,
            "exit_every": s.model.exit_every,
            "noise_arm": s.channel.arm,
        }
        return cls(**{**values, **given})


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
    """Train, calibrate, evaluate and write ``out`` (safetensors) plus its JSON model card.

    ``cfg`` picks one of three trainings: :func:`train_channel_noise`, :func:`train_heads` or
    :func:`train_full`; they freeze different parts, so asking for two is an error.
    """
    if cfg.channel_noise and cfg.heads_only:
        raise ValueError("channel-noise training and heads-only training exclude each other")
    mode = (
        train_channel_noise if cfg.channel_noise else train_heads if cfg.heads_only else train_full
    )
    return mode(cfg, train_set, test_set, pretrained_dir, out, device or torch.device("cpu"))


@dataclass
class _Mode:
    """What differs between the trainings: the trained parameters and a batch's forward pass."""

    groups: list[dict]
    set_train: Callable[[], None]  # train/eval mode per module, at every epoch
    forward: Callable[[torch.Tensor, np.random.Generator], list[torch.Tensor]]
    final_loss_trains: bool = True  # False: the final exit's loss is shown, not trained on


@dataclass
class _Fitted:
    """What the training loop reports: time, steps and the frames held out for calibration."""

    seconds: float
    steps: int
    hold: np.ndarray


def train_full(
    cfg: TrainConfig,
    train_set: Dataset,
    test_set: Dataset,
    pretrained_dir: Path | None,
    out: Path,
    device: torch.device,
) -> dict:
    """Backbone and exits together: the final exit recovers what JPEG costs, the exits learn."""
    rng, model, _ = _start(cfg, pretrained_dir, device)
    groups = [
        {"params": model.backbone.parameters(), "lr": cfg.lr_backbone},
        {"params": model.exits.parameters(), "lr": cfg.lr_heads},
    ]
    mode = _Mode(groups, model.train, lambda xb, _rng: model.forward_all(xb))
    fitted = _fit(cfg, model, mode, rng, train_set, device)
    model.temperature.copy_(_calibrate(model, train_set, fitted.hold))
    return _evaluate_and_save(cfg, model, fitted, train_set, test_set, pretrained_dir, out)


def train_heads(
    cfg: TrainConfig,
    train_set: Dataset,
    test_set: Dataset,
    pretrained_dir: Path | None,
    out: Path,
    device: torch.device,
) -> dict:
    """The exits only: backbone and final head frozen (weights and BatchNorm statistics)."""
    rng, model, _ = _start(cfg, pretrained_dir, device)
    model.backbone.requires_grad_(False)

    def set_train() -> None:
        model.train()
        model.backbone.eval()  # frozen: keep its BatchNorm statistics

    def forward(xb: torch.Tensor, _rng: np.random.Generator) -> list[torch.Tensor]:
        with torch.no_grad():
            feats, final = model.exit_features(xb)
        return [*(model.exits[k](f) for k, f in enumerate(feats)), final]

    groups = [{"params": model.exits.parameters(), "lr": cfg.lr_heads}]
    mode = _Mode(groups, set_train, forward, final_loss_trains=False)
    fitted = _fit(cfg, model, mode, rng, train_set, device)
    model.temperature.copy_(_calibrate(model, train_set, fitted.hold))
    return _evaluate_and_save(cfg, model, fitted, train_set, test_set, pretrained_dir, out)


def train_channel_noise(
    cfg: TrainConfig,
    train_set: Dataset,
    test_set: Dataset,
    pretrained_dir: Path | None,
    out: Path,
    device: torch.device,
) -> dict:
    """The cloud part after ``cfg.noise_arm`` on analog-channel features
    (:mod:`splitee.training.noise_training`); the edge part and its exits stay as they were."""
    from splitee.training import noise_training as nt

    rng, model, start = _start(cfg, pretrained_dir, device)
    if start is None:
        raise ValueError("channel-noise training starts from a multi-exit checkpoint (init)")
    k = cfg.noise_arm - 1
    cloud_params = nt.prepare(model, k)
    noise_gen = torch.Generator().manual_seed(cfg.seed)

    def forward(xb: torch.Tensor, rng: np.random.Generator) -> list[torch.Tensor]:
        lo, hi = cfg.noise_snr_db
        snr = nt.sample_snr(len(xb), lo, hi, cfg.noise_prob, rng)
        return nt.noisy_outputs(model, xb, k, snr, noise_gen)

    groups = [{"params": cloud_params, "lr": cfg.lr_backbone}]
    fitted = _fit(
        cfg, model, _Mode(groups, lambda: nt.train_mode(model, k), forward), rng, train_set, device
    )
    temps = _calibrate(model, train_set, fitted.hold)
    temps[: cfg.noise_arm] = start.temperature[: cfg.noise_arm]  # frozen exits keep theirs
    model.temperature.copy_(temps)
    snrs = [-5.0, 0.0, 5.0, 10.0, 20.0]
    return _evaluate_and_save(
        cfg,
        model,
        fitted,
        train_set,
        test_set,
        pretrained_dir,
        out,
        extra=lambda: {"channel_accuracy": nt.channel_accuracy(model, test_set, k, snrs, cfg.seed)},
    )


def _start(
    cfg: TrainConfig, pretrained_dir: Path | None, device: torch.device
) -> tuple[np.random.Generator, MultiExitNet, MultiExitNet | None]:
    """Seeded generator and the initial model (on ``device``), plus the ``init`` checkpoint
    it started from, if any (channel-noise training keeps its edge temperatures)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    from splitee.models.multi_exit import default_exit_depths

    model = MultiExitNet(cfg.arch, default_exit_depths(cfg.arch, cfg.exit_every), cfg.head)
    start = None
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
    model.to(device)
    return rng, model, start


def _fit(
    cfg: TrainConfig,
    model: MultiExitNet,
    mode: _Mode,
    rng: np.random.Generator,
    train_set: Dataset,
    device: torch.device,
) -> _Fitted:
    """The training loop every mode shares: SGD with warm-up and cosine decay on a weighted sum
    of exit losses; leaves the model on the CPU in eval mode."""
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

    opt = torch.optim.SGD(
        mode.groups,
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
        mode.set_train()
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
                outs = mode.forward(xb, rng)
            losses = [exit_loss(o.float(), yb, outs[-1].float().detach(), cfg) for o in outs]
            if not mode.final_loss_trains:
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
    seconds = time.time() - t0
    model.cpu().eval()
    return _Fitted(seconds, step, hold)


def _calibrate(model: MultiExitNet, train_set: Dataset, hold: np.ndarray) -> torch.Tensor:
    """One temperature per exit fitted on the held-out training frames (1 where none)."""
    if not len(hold):
        return torch.ones(model.num_exits)
    idx = np.sort(hold)
    logits = exit_logits_all(model, train_set.images[idx])
    return fit_temperatures(logits, torch.from_numpy(train_set.labels[idx]))


def _evaluate_and_save(
    cfg: TrainConfig,
    model: MultiExitNet,
    fitted: _Fitted,
    train_set: Dataset,
    test_set: Dataset,
    pretrained_dir: Path | None,
    out: Path,
    extra: Callable[[], dict] | None = None,
) -> dict:
    """Per-exit accuracy on the test set, the model card, and the checkpoint written."""
    accuracy = per_exit_accuracy(model, test_set, cfg.eval_distortions, cfg.seed)
    initialised_from = cfg.init or (f"akamaster {cfg.arch}" if pretrained_dir else "random")
    card = model_card(
        cfg,
        model,
        fitted,
        accuracy,
        initialised_from,
        train_set,
        test_set,
        extra() if extra else {},
    )
    save_checkpoint(model, out, card)
    return card


def model_card(
    cfg: TrainConfig,
    model: MultiExitNet,
    fitted: _Fitted,
    accuracy: dict[str, list[float]],
    initialised_from: str,
    train_set: Dataset,
    test_set: Dataset,
    extra: dict | None = None,
) -> dict:
    """The JSON model card saved beside the weights: architecture, training, calibration and
    accuracy, so a checkpoint says how it was made and what it is worth."""
    return {
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
        "initialised_from": initialised_from,
        "training": {**asdict(cfg), "seconds": round(fitted.seconds, 1), "steps": fitted.steps},
        "temperatures": [round(float(t), 4) for t in model.temperature],
        "data": {"train": train_set.source, "test": test_set.source, "test_frames": len(test_set)},
        "accuracy": accuracy,
        "final_exit_accuracy": accuracy["pristine"][-1] if "pristine" in accuracy else None,
        **(extra or {}),
        "machine": machine_description(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def summarise(card: dict) -> str:
    """A short human table of per-exit accuracy."""
    lines = ["exit depth: " + " ".join(f"{d:>6}" for d in card["architecture"]["exit_depths"])]
    for spec, accs in card["accuracy"].items():
        lines.append(f"{spec:>10}: " + " ".join(f"{a * 100:6.2f}" for a in accs))
    lines.append(f"training seconds: {card['training']['seconds']}")
    return "\n".join(lines)


__all__ = [
    "TrainConfig",
    "exit_logits_all",
    "model_card",
    "summarise",
    "train",
    "train_channel_noise",
    "train_full",
    "train_heads",
]
