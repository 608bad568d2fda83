"""Fine-tune a bottleneck's cloud-side decoders on distorted frames, the edge left unchanged.

Why: a codec distilled mostly on clean tensors loses far more than the unsplit model under
sensor noise (arm 1 at Δ = 6 on the whole test split: 4.5 points under the unsplit model at
noise σ 0.2, against 0.94 on pristine frames), and the papers' confidence reward does not
charge it enough to send those frames another way. The decoder is where it can be won back:
it sees the integer latent of a noisy frame and can learn to hand the suffix the tensor of
the *clean* frame. Only the decoder trains, so the encoder, the integer latents and the coding
tables — everything the edge computes and sends — stay byte-identical: a deployed edge keeps
working with a tuned cloud, and the bytes per frame do not move.

Per step: a batch of training frames, randomly cropped and flipped (the clean view), a share of
them distorted by random noise or blur (the input view); the frozen backbone gives the clean
view's deeper split tensors and final logits (the teacher: no label anywhere) and the input
view's prefix tensor; the encoder quantizes that at a random rate point, the decoder
reconstructs it, and the frozen suffix runs on the reconstruction. Loss: KL to the teacher's
logits (T = 2) + the standardised MSE of every deeper split tensor + a small anchor to the
clean view's own prefix tensor. Resumable: the decoder and its Adam moments are saved every
30 s; a restart continues the cosine over the time left.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from splitee.distortions import Distortion
from splitee.models.bottleneck_checkpoint import BottleneckBundle, save_bottlenecks
from splitee.models.inputs import to_input
from splitee.training.bottleneck import (
    _load_state,
    _progress,
    _save_state,
    _subset,
    _teach,
    decoder_cpu_ms,
    evaluate_arm,
    random_crop_flip,
    suffix_distill,
)


@dataclass(kw_only=True)
class DecoderTuneConfig:
    seconds: float = 1800.0  # training time per arm (a resumed run continues to it)
    batch: int = 16
    lr: float = 2e-4  # the end of distillation's scale: a fine-tune, not a restart
    # share of each batch distorted (the rest stays clean, so pristine accuracy is kept)
    distorted_share: float = 0.6
    noise: tuple[float, float] = (0.02, 0.25)  # σ range of the random noise (× 255)
    blur: tuple[float, float] = (0.3, 2.0)  # σ range of the random blur (pixels)
    # levels drawn log-uniformly: as many mild distortions as heavy ones (uniform draws spend
    # most steps on heavy ones, where the codec had the most to win back first)
    log_levels: bool = False
    # the rate points (their steps Δ) that train; None: all. The decoder is shared by every
    # rate, so a tune for the one rate a deployment codes at spends every step there
    steps: tuple[float, ...] | None = None
    deep: float = 1.0  # weight of the deeper split tensors' standardised MSE
    anchor: float = 0.1  # weight of the MSE to the clean view's prefix tensor (standardised)
    kd_temperature: float = 2.0
    threads: int = 2
    seed: int = 0
    test_limit: int = 1000  # the card's seeded test frames (as train-bottleneck's)

    def key(self) -> str:
        """What the state depends on (not the time budget: a longer run resumes a shorter)."""
        d = asdict(self)
        for k in ("seconds", "threads", "test_limit"):
            d.pop(k)
        for k, default in (("log_levels", False), ("steps", None)):  # added later: at their
            if d[k] == default:  # defaults they leave the key (and so older states) as it was
                d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def distort_some(
    images: np.ndarray, share: float, cfg: DecoderTuneConfig, rng: np.random.Generator
) -> np.ndarray:
    """A copy of ``images`` with a random ``share`` of them each given a random noise or
    blur at a random level (the clean ones unchanged)."""
    out = images.copy()
    for i in np.flatnonzero(rng.random(len(images)) < share):
        name, (lo, hi) = ("noise", cfg.noise) if rng.random() < 0.5 else ("blur", cfg.blur)
        level = (
            np.exp(rng.uniform(np.log(lo), np.log(hi))) if cfg.log_levels else rng.uniform(lo, hi)
        )
        d = Distortion(name, float(level))
        out[i] = d.apply(images[i], seed=int(rng.integers(1 << 31)))
    return out


def trained_rates(steps: list[float], chosen: tuple[float, ...] | None) -> list[int]:
    """The rate indices of the steps ``chosen`` (all of them for None); a step the codec does
    not have is a ValueError naming the ones it has."""
    if chosen is None:
        return list(range(len(steps)))
    missing = [s for s in chosen if s not in steps]
    if missing or not chosen:
        raise ValueError(f"steps {list(chosen)}: this codec's rate points are Δ = {steps}")
    return [steps.index(s) for s in chosen]


@torch.no_grad()
def _forward_to(model, x: torch.Tensor, k: int) -> torch.Tensor:
    h = x.contiguous(memory_format=torch.channels_last)
    for j in range(k + 1):
        h = model.segment(h, j)
    return h


def tune_arm(
    model,
    bundle: BottleneckBundle,
    k: int,
    images: np.ndarray,
    cfg: DecoderTuneConfig,
    state: Path,
) -> dict:
    """Train arm ``k``'s decoder for ``cfg.seconds`` (resuming ``state``); returns its info."""
    codec = bundle.bottlenecks.codecs[k]
    for p in codec.parameters():
        p.requires_grad_(False)
    params = list(codec.decoder.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    info = {"seconds": 0.0, "steps": 0, "kd": []}
    if state.exists():
        info = _load_state(state, codec, opt)
    L = model.num_exits
    # the deeper split points' per-channel scale: their own codecs' training statistics
    keep = {j for j in range(k + 1, L - 1) if j in bundle.tables}
    deep_std = {j: bundle.bottlenecks.codecs[j].encoder.std.clamp_min(1e-3) for j in keep}
    rng = np.random.default_rng(cfg.seed + 7919 * info["steps"])
    T, rates = cfg.kd_temperature, trained_rates(codec.steps, cfg.steps)
    codec.decoder.train()
    t_block, kd_sum, n = time.perf_counter(), 0.0, 0
    while info["seconds"] < cfg.seconds:
        frac = min(info["seconds"] / cfg.seconds, 1.0)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))
        idx = rng.choice(len(images), cfg.batch, replace=False)
        clean = np.stack([random_crop_flip(images[i], rng) for i in idx])
        noisy = distort_some(clean, cfg.distorted_share, cfg, rng)
        h_clean = _forward_to(model, to_input(clean), k)
        targets, t = _teach(model, k, h_clean, keep)
        h_in = _forward_to(model, to_input(noisy), k)
        r = int(rates[rng.integers(len(rates))])
        with torch.no_grad():
            z = codec.quantize(h_in, r).float() * codec.steps[r]
        rec_std = codec.decoder.forward_std(z)
        clean_std = (h_clean - codec.decoder.mean) / codec.decoder.std
        h = (rec_std * codec.decoder.std + codec.decoder.mean).contiguous(
            memory_format=torch.channels_last
        )
        kd, deep = suffix_distill(model, k, h, targets, deep_std, t, T)
        loss = kd + cfg.deep * deep + cfg.anchor * F.mse_loss(rec_std, clean_std)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        kd_sum += float(kd.detach())
        n += 1
        spent = time.perf_counter() - t_block
        if spent > 30 or info["seconds"] + spent >= cfg.seconds:
            info["seconds"] += spent
            info["steps"] += n
            info["kd"].append(round(kd_sum / n, 4))
            _save_state(state, codec, opt, info)
            _progress(
                f"arm {k + 1} decoder: {info['steps']} steps, kd {kd_sum / n:.4f}, "
                f"{info['seconds']:.0f}/{cfg.seconds:.0f} s"
            )
            t_block, kd_sum, n = time.perf_counter(), 0.0, 0
    codec.eval()
    for p in params:
        p.requires_grad_(False)
    return info


@torch.inference_mode()
def _prefix_tensors(model, images: np.ndarray, k: int, bs: int = 32) -> np.ndarray:
    batches = range(0, len(images), bs)
    return np.concatenate(
        [_forward_to(model, to_input(images[s : s + bs]), k).numpy() for s in batches]
    )


def tune_decoders(
    model,
    bundle: BottleneckBundle,
    bundle_path: Path,
    arms: list[int],
    train_images: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    cfg: DecoderTuneConfig,
    out: Path,
    work_dir: Path,
) -> dict:
    """Tune the decoders of ``arms`` (0-based, learned codecs only), re-measure their card rows
    on the card's seeded test frames and write checkpoint + card to ``out``."""
    from splitee.files import sha256_file

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    for p in model.parameters():
        p.requires_grad_(False)
    learned = [k for k in arms if bundle.bottlenecks.trainable(k)]
    if not learned or len(learned) != len(arms):
        raise ValueError(f"arms {[a + 1 for a in arms]}: only learned codecs have a decoder")
    # keyed by the checkpoint tuned and the recipe: another bottleneck never resumes from it
    work = Path(work_dir) / f"{sha256_file(bundle_path)[:16]}-{cfg.key()}"
    work.mkdir(parents=True, exist_ok=True)
    test_x, test_y = _subset(test_images, test_labels, cfg.test_limit, cfg.seed)
    card = json.loads(json.dumps(bundle.card))
    rows = {a["arm"] - 1: a for a in card.get("arms", [])}
    for k in learned:
        codec = bundle.bottlenecks.codecs[k]
        info = tune_arm(model, bundle, k, train_images, cfg, work / f"arm{k}-decoder.safetensors")
        feats = _prefix_tensors(model, test_x, k)
        measured = evaluate_arm(model, k, codec, bundle.tables[k], feats, test_y)
        if k not in rows:  # a checkpoint without a card entry for this arm gets one
            rows[k] = {"arm": k + 1}
            card.setdefault("arms", []).append(rows[k])
        row = rows[k]
        row["rates"] = measured
        row["decoder_cpu_ms"] = decoder_cpu_ms(codec)
        training = row.setdefault("training", {})
        if "decoder_tune" in training:  # a tune of a tuned checkpoint keeps the earlier one
            training.setdefault("decoder_tune_history", []).append(training["decoder_tune"])
        training["decoder_tune"] = {
            "config": asdict(cfg),
            "seconds": round(info["seconds"], 1),
            "steps": info["steps"],
            "kd": info["kd"][-10:],
        }
        _progress(f"arm {k + 1}: {json.dumps(measured)}")
    card["decoder_tuned_from"] = Path(bundle_path).name
    card["decoder_tuned_from_sha256"] = sha256_file(bundle_path)
    save_bottlenecks(
        bundle.bottlenecks, bundle.tables, out, bundle.base_path, bundle.base_sha256, card
    )
    return card
