"""Train a learned bottleneck for every split arm of a frozen multi-exit backbone.

The backbone never changes: its prefix tensors and final logits are computed once per view and
cached; the codecs train on the cache. Per arm, two stages, each resumable at an epoch (stage
1) or a checkpointed step block (stage 2) — an interrupted run continues where it stopped:

1. **rate–distortion** on cached prefix tensors: distortion = MSE of the standardised
   reconstruction, rate = bits under the factorized density; one rate point Δ per batch, its
   weight λ₀·Δ² (the slope of D(R) at step Δ), so every rate point is trained for its own
   trade-off;
2. **distillation through the suffix** with real rounding (straight-through) and the rate term
   kept, so bytes stay near stage 1's: encoder and decoder learn what the rest of the network
   needs — KL to the unsplit model's final logits, a small feature-MSE anchor — within a time
   budget per arm, the learning rate decaying (cosine) over it.

Then the integer tables (histograms of the training latents per rate point and channel) and
the test split's figures: bytes per frame of real coded payloads, top-1 after encode → code →
decode → suffix, FLOPs of encoder and decoder, decoder CPU time.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from splitee.checkerboard import fit_context_tables
from splitee.coding_tables import Coder, Tables, coder_for, coding_name
from splitee.data import Dataset
from splitee.entropy import MAX_ALPHABET, ChannelTables
from splitee.models.bottleneck import (
    ArmCodec,
    Bottlenecks,
    CodecSpec,
    default_spec,
    module_flops,
    scalar_spec,
)
from splitee.models.inputs import to_input


@dataclass(kw_only=True)
class BottleneckTrainConfig:
    # quantization steps Δ, one rate point each: a step of 0.5 cost arms 1–2 10–12 kB (as much
    # as the camera's JPEG) for no accuracy over Δ = 1 on any arm, while arm 1's codec trained
    # at 0.5–4, coded at an untrained Δ = 5, kept 92.5 % at 2.5 kB: the low-rate end is
    # where a codec pays
    steps: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0, 6.0])
    lambda0: float = 0.1  # rate weight at Δ = 1, in MSE units per bit per input value
    batch_size: int = 32
    lr: float = 2e-3
    stage1_epochs: int = 3
    stage1_frames: int = 2000  # frames per stage-1 epoch (a random subset of the cache)
    # distillation budget per arm (0-based arm k gets stage2_seconds[k]): the shallow arms
    # carry the most detail and the suffix behind them costs the most per step
    stage2_seconds: list[float] = field(
        default_factory=lambda: [2400.0, 900.0, 540.0, 540.0, 300.0]
    )
    stage2_batch: int = 16
    # weight of the split tensor's MSE beside the distillation in stage 2: a small anchor; at
    # 1 it pulls the decoder towards the blurry MSE-optimal tensor the suffix cannot use
    stage2_mse: float = 0.1
    # weight of the deeper features in stage 2: the standardised MSE between the suffix's
    # tensor at every deeper split point (run on the reconstruction) and the unsplit model's,
    # summed; a dense target per frame, where the final logits alone let the codec fit the
    # training frames (arm 1, 10 min from one state: test agreement 86.4 → 87.6 % with it,
    # → 86.5 % without)
    stage2_deep: float = 1.0
    kd_temperature: float = 2.0
    # share of stage-2 batches whose tensors are cut-mixed (a box pasted from another frame's
    # tensor) with the teacher — deeper tensors and logits — computed on the fly by the frozen
    # suffix: an endless supply of new tensors where the cached views are a few (arm 1's codec
    # had agreed with the unsplit model on 99.2 % of clean training frames, 96.4 % of an
    # augmented view and 94.0 % of test frames; arm 5, 600 s from one state, half the batches
    # mixed against none: 90.1 / 90.6 / 90.1 / 87.6 % against 90.0 / 89.8 / 90.0 / 87.7 %)
    stage2_mix: float = 0.5
    # cached views: every training frame clean (view 0), a distorted subset (view 1), then
    # every frame randomly cropped, flipped and sometimes distorted (views 2…): with fewer,
    # the codecs memorise the training frames (arm 1 agreed with the unsplit model on 99.8 %
    # of training frames and 83 % of test frames after 6,000 distillation steps on views 0–1;
    # with views 0–3, 98.6 % and 88 % after 3,000 s)
    views: int = 8
    distorted_frames: int = 2000  # frames in each distorted view (a seeded random subset)
    extract_batch: int = 32
    threads: int = 2
    seed: int = 0
    limit: int | None = None  # a seeded random N of the training frames (smoke runs)
    # the model card's per-rate figures on a seeded random subset of the test split (the
    # whole split is `splitee evaluate`'s, through the codec, at every distortion)
    test_limit: int | None = 1000
    arms: list[int] | None = None  # 0-based split arms to train (default: all)
    # arms whose tensor's side is at most this get the scalar codec (nothing to train: the
    # standardised tensor is the latent), the others a learned one; 0: learned everywhere.
    # Measured on EfficientNet-Lite0 (600 test frames, arms 3–5 at 14×14 and 7×7): within
    # about a point of the unsplit model at 1.5–4.5 kB, where the learned codecs stayed 3–5
    # points under; at 28×28 and 56×56 the learned codecs are ahead (models/bottleneck.py)
    scalar_side: int = 14
    # code with checkerboard contexts (splitee.checkerboard) rather than factorized tables:
    # on the whole test split 1.5–4.5 % fewer bytes at Δ = 1 and 5–11 % at Δ = 6 for the same
    # symbols (arm 1 at Δ = 6: 2,704 → 2,520 B; bench/codec_split.py), two coder calls a frame
    context: bool = True


def _progress(msg: str) -> None:
    print(f"[bottleneck {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- feature cache
@torch.inference_mode()
def _extract(model, images: np.ndarray, bs: int, desc: str) -> tuple[list[np.ndarray], np.ndarray]:
    """float16 prefix tensors of every split arm and float32 final logits, per frame."""
    L = model.num_exits
    feats: list[list[np.ndarray]] = [[] for _ in range(L - 1)]
    logits = []
    for s in tqdm(range(0, len(images), bs), desc=desc, mininterval=30):
        x = to_input(images[s : s + bs]).contiguous(memory_format=torch.channels_last)
        h = x
        for k in range(L):
            h = model.segment(h, k)
            if k < L - 1:
                feats[k].append(h.half().numpy())
        logits.append(model.exit_logits(h, L - 1).float().numpy())
    return [np.concatenate(f) for f in feats], np.concatenate(logits)


AUGMENT_RECIPE = "rc1"  # what views 2… hold (part of the cache's key): change it with _augment


def random_crop_flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random resized crop of one HWC frame (25–100 % of the area, aspect 3:4–4:3) back to
    its size, flipped horizontally half the time."""
    h, w, _ = image.shape
    area = rng.uniform(0.25, 1.0) * h * w
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    ch = int(min(h, round(np.sqrt(area / aspect))))
    cw = int(min(w, round(np.sqrt(area * aspect))))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = torch.from_numpy(np.ascontiguousarray(image[y : y + ch, x : x + cw]))
    crop = crop.permute(2, 0, 1)[None].float()
    big = F.interpolate(crop, size=(h, w), mode="bilinear", antialias=True)
    img = big[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    return img[:, ::-1] if rng.random() < 0.5 else img


def _augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """:func:`random_crop_flip` on every frame, and on a third of the chunks a random noise or
    blur (with its own random flips)."""
    from splitee.training.train_backbone import _random_distort

    out = np.empty_like(images)
    for i in range(len(images)):
        out[i] = random_crop_flip(images[i], rng)
    if rng.random() < 1 / 3:
        out = _random_distort(out, rng)
    return out


def build_cache(
    model, images: np.ndarray, cache: Path, views: int, seed: int, bs: int, subset: int
) -> None:
    """``cache/view{v}-arm{k}.npy`` and ``cache/view{v}-logits.npy``: view 0 every frame clean,
    view 1 a seeded random ``subset`` of them with random noise or blur and flips, views 2…
    every frame augmented (:func:`_augment`) — the backbone's forward pass is the run's
    largest cost on a CPU; a complete view is kept."""
    from splitee.training.train_backbone import _random_distort

    cache.mkdir(parents=True, exist_ok=True)
    for v in range(views):
        done = cache / f"view{v}-logits.npy"
        if done.exists():
            continue
        rng = np.random.default_rng(seed + v)
        if v == 0:
            imgs = images
        elif v == 1:
            pick = np.sort(rng.permutation(len(images))[:subset])
            chunks = [
                _random_distort(images[pick[s : s + 64]], rng) for s in range(0, len(pick), 64)
            ]
            imgs = np.concatenate(chunks)
        else:
            chunks = [_augment(images[s : s + 64], rng) for s in range(0, len(images), 64)]
            imgs = np.concatenate(chunks)
        feats, logits = _extract(model, imgs, bs, f"cache view {v + 1}/{views}")
        for k, f in enumerate(feats):
            tmp = cache / f"view{v}-arm{k}.tmp.npy"
            np.save(tmp, f)
            tmp.rename(cache / f"view{v}-arm{k}.npy")
        tmp = cache / f"view{v}-logits.tmp.npy"
        np.save(tmp, logits)
        tmp.rename(done)
        _progress(f"cached view {v + 1}/{views}")


class ViewStack:
    """The cached views of one arm as one array of frames, read lazily from the memory-mapped
    files (arm 1's four views are 3.5 GB; its deeper arms' targets as much again): indexing by
    a slice or an array of frame numbers reads only those frames."""

    def __init__(self, parts: list[np.ndarray]) -> None:
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts])
        self.shape = (int(self.starts[-1]), *parts[0].shape[1:])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: slice | np.ndarray) -> np.ndarray:
        rows = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx)
        view = np.searchsorted(self.starts, rows, side="right") - 1
        out = np.empty((len(rows), *self.shape[1:]), self.parts[0].dtype)
        for v in np.unique(view):
            sel = view == v
            out[sel] = self.parts[v][rows[sel] - self.starts[v]]
        return out


#: cached tensors: a memory-mapped test view or the training views stacked
Frames = np.ndarray | ViewStack


def _load_view_arm(cache: Path, views: int, k: int) -> ViewStack:
    return ViewStack([np.load(cache / f"view{v}-arm{k}.npy", mmap_mode="r") for v in range(views)])


def _load_logits(cache: Path, views: int) -> np.ndarray:
    return np.concatenate([np.load(cache / f"view{v}-logits.npy") for v in range(views)])


# ----------------------------------------------------------------------------- resumable state
def _save_state(path: Path, codec: ArmCodec, opt: torch.optim.Optimizer, info: dict) -> None:
    tensors = {f"model.{n}": t.detach().contiguous() for n, t in codec.state_dict().items()}
    names = {id(p): n for n, p in codec.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p)
            if st:
                n = names[id(p)]
                tensors[f"opt.{n}.exp_avg"] = st["exp_avg"].contiguous()
                tensors[f"opt.{n}.exp_avg_sq"] = st["exp_avg_sq"].contiguous()
                tensors[f"opt.{n}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(
                    1
                )
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"info": json.dumps(info)})
    tmp.rename(path)


def _load_state(path: Path, codec: ArmCodec, opt: torch.optim.Optimizer) -> dict:
    from safetensors import safe_open

    tensors = load_file(str(path))
    codec.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for n, p in codec.named_parameters():
        if f"opt.{n}.exp_avg" in tensors:
            opt.state[p] = {
                "exp_avg": tensors[f"opt.{n}.exp_avg"],
                "exp_avg_sq": tensors[f"opt.{n}.exp_avg_sq"],
                "step": torch.tensor(float(tensors[f"opt.{n}.step"][0])),
            }
    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["info"])


# ----------------------------------------------------------------------------- training
def _stats(feats: Frames, n: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of a seeded random ``n`` tensors (the cache is sorted by
    class, so never its head)."""
    idx = np.sort(np.random.default_rng(0).permutation(len(feats))[:n])
    x = torch.from_numpy(np.asarray(feats[idx], np.float32))
    return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))


def _code(
    codec: ArmCodec, h: torch.Tensor, step: float, noisy: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One training pass of prefix tensors ``h`` at quantization step ``step``:
    (standardised input, standardised reconstruction, bits per frame under the density).
    The rate always sees noisy latents; the decoder sees noisy ones (``noisy``) or rounded
    ones with a straight-through gradient."""
    h_std = (h - codec.encoder.mean) / codec.encoder.std
    z = codec.encoder.net(h_std)
    bits = codec.density.bits(z + (torch.rand_like(z) - 0.5) * step, step)
    if noisy:
        z_hat = z + (torch.rand_like(z) - 0.5) * step
    else:
        z_hat = z + (torch.round(z / step) * step - z).detach()
    return h_std, codec.decoder.forward_std(z_hat), bits


def _rows(feats: Frames, idx: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(feats[idx], np.float32))


def _cutmix(h: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Each tensor of the batch with a random box (a quarter to three quarters of the map)
    pasted from another's: a new prefix tensor that no cached view holds, locally like a real
    one. Its teacher is the frozen suffix run on it (:func:`_teach`)."""
    n, _, hh, ww = h.shape
    area = rng.uniform(0.25, 0.75)
    bh, bw = max(1, round(hh * np.sqrt(area))), max(1, round(ww * np.sqrt(area)))
    y, x = int(rng.integers(0, hh - bh + 1)), int(rng.integers(0, ww - bw + 1))
    out = h.clone()
    out[:, :, y : y + bh, x : x + bw] = h[rng.permutation(n), :, y : y + bh, x : x + bw]
    return out


@torch.no_grad()
def _teach(model, k: int, h: torch.Tensor, keep: set[int]) -> tuple[dict, torch.Tensor]:
    """The unsplit model's answer for prefix tensor ``h`` at arm ``k``: its tensors at the
    deeper split points in ``keep`` and its final logits (the teacher of a mixed tensor)."""
    deep = {}
    h = h.contiguous(memory_format=torch.channels_last)
    for j in range(k + 1, model.num_exits):
        h = model.segment(h, j)
        if j in keep:
            deep[j] = h
    return deep, model.exit_logits(h, model.num_exits - 1)


def suffix_distill(
    model,
    k: int,
    h: torch.Tensor,
    targets: dict[int, torch.Tensor],
    deep_std: dict[int, torch.Tensor],
    teacher_logits: torch.Tensor,
    T: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen suffix run on arm ``k``'s reconstruction ``h``, segment by segment → (KL of
    its final logits to the teacher's at temperature ``T``, times T²; the standardised MSE of
    its tensors at the deeper split points in ``targets``, summed): the distillation loss of
    both training a codec and tuning its decoder."""
    deep = torch.zeros(())
    for j in range(k + 1, model.num_exits):
        h = model.segment(h, j)
        if j in targets:
            deep = deep + F.mse_loss(h / deep_std[j], targets[j] / deep_std[j])
    logits = model.exit_logits(h, model.num_exits - 1)
    p_teacher = F.softmax(teacher_logits / T, 1)
    kd = F.kl_div(F.log_softmax(logits / T, 1), p_teacher, reduction="batchmean")
    return kd * T * T, deep


def _optimizer(codec: ArmCodec, lr: float) -> torch.optim.Adam:
    """Adam; the density at 10× the rate: its only gradient is the rate term's, and it has
    to follow the latents' distribution as they move (CompressAI trains it alike, faster)."""
    dens = list(codec.density.parameters())
    ids = {id(p) for p in dens}
    rest = [p for p in codec.parameters() if id(p) not in ids]
    return torch.optim.Adam([{"params": rest, "lr": lr}, {"params": dens, "lr": lr * 10}])


def train_stage1(codec: ArmCodec, feats: Frames, cfg: BottleneckTrainConfig, state: Path) -> dict:
    """Rate–distortion on cached tensors; resumes at the last finished epoch."""
    opt = _optimizer(codec, cfg.lr)
    info = {"stage1_epoch": 0, "history": []}
    if state.exists():
        info = _load_state(state, codec, opt)
    else:
        codec.set_statistics(*_stats(feats))
    numel = float(np.prod(codec.spec.in_shape))
    rng = np.random.default_rng(cfg.seed)
    for _ in range(info["stage1_epoch"]):
        rng.permutation(len(feats))  # the same subsets as an uninterrupted run
    for epoch in range(info["stage1_epoch"], cfg.stage1_epochs):
        codec.train()
        order = np.sort(rng.permutation(len(feats))[: cfg.stage1_frames])
        order = order[rng.permutation(len(order))]
        lr = cfg.lr * (0.3 if epoch == cfg.stage1_epochs - 1 else 1.0)
        opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = lr, lr * 10
        t0, tot_d, tot_b, n = (
            time.perf_counter(),
            0.0,
            np.zeros(len(cfg.steps)),
            np.zeros(len(cfg.steps)),
        )
        bar = tqdm(
            range(0, len(order), cfg.batch_size), desc=f"stage 1 epoch {epoch + 1}", mininterval=30
        )
        for s in bar:
            idx = np.sort(order[s : s + cfg.batch_size])
            r = int(rng.integers(len(cfg.steps)))
            step = cfg.steps[r]
            # additive uniform noise stands in for rounding (Ballé et al.): unlike a
            # straight-through round, it lets information through while latents are small
            h_std, rec_std, bits = _code(codec, _rows(feats, idx), step, noisy=True)
            d = F.mse_loss(rec_std, h_std)
            loss = d + cfg.lambda0 * step**2 * bits.mean() / numel
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot_d += float(d.detach()) * len(idx)
            tot_b[r] += float(bits.detach().sum())
            n[r] += len(idx)
        row = {
            "epoch": epoch + 1,
            "mse": round(tot_d / len(order), 4),
            "bytes_est": [round(b / max(c, 1) / 8) for b, c in zip(tot_b, n, strict=True)],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        info["history"].append(row)
        info["stage1_epoch"] = epoch + 1
        _save_state(state, codec, opt, info)
        _progress(f"stage 1 {row}")
    return info


def train_stage2(
    model,
    k: int,
    codec: ArmCodec,
    feats: Frames,
    deeper: dict[int, Frames],
    teacher: np.ndarray,
    cfg: BottleneckTrainConfig,
    state: Path,
) -> dict:
    """Distillation through the frozen suffix with real rounding (straight-through), the
    rate term kept: KL to the unsplit model's final logits + w_deep·MSE of the deeper split
    tensors (``deeper``: arm j > k's cached tensors of the same frames) + w·feature MSE +
    λ₀Δ²·bits, for ``stage2_seconds[k]``; saved every block of steps, so a restart continues
    with the time left."""
    opt = _optimizer(codec, cfg.lr * 0.3)
    info = _load_state(state, codec, opt)
    info.setdefault("stage2_seconds", 0.0)
    info.setdefault("stage2_steps", 0)
    budget = cfg.stage2_seconds[min(k, len(cfg.stage2_seconds) - 1)]
    info["stage2_budget"] = budget  # this arm's (the card's config is the last run's)
    if info["stage2_seconds"] < budget:
        # a resumed state may have been trained with other rate points (a warm start): the
        # card says which steps trained it for how long
        runs = info.setdefault("stage2_runs", [])
        if not runs and info["stage2_seconds"] > 0:  # a state from before runs were recorded
            runs.append({"steps": None, "from_seconds": 0})
        run = {"steps": list(cfg.steps), "from_seconds": round(info["stage2_seconds"])}
        if cfg.stage2_mix:
            run["mix"] = cfg.stage2_mix
        if not runs or (runs[-1]["steps"], runs[-1].get("mix")) != (cfg.steps, run.get("mix")):
            runs.append(run)
    rng = np.random.default_rng(cfg.seed + 1000 + info["stage2_steps"])
    T = cfg.kd_temperature
    numel = float(np.prod(codec.spec.in_shape))
    # per-channel scale of each deeper tensor: the MSE in standardised units (the means cancel)
    deep_std = {j: _stats(f)[1].clamp_min(1e-3).view(1, -1, 1, 1) for j, f in deeper.items()}
    codec.train()
    base_lr = cfg.lr * 0.3
    t_block, kd_sum, steps = time.perf_counter(), 0.0, 0
    while info["stage2_seconds"] < budget:
        # cosine decay over the budget (by time spent, so a resumed run continues the curve);
        # a warm start with another recipe (a new entry in stage2_runs) gets a curve of its
        # own over the time it adds: continued at the old curve's tail, arm 5 gained ~1 point
        # in 400 s, restarted at the full rate 2.4 points in 600 s
        run_start = (info.get("stage2_runs") or [{}])[-1].get("from_seconds", 0)
        start = min(float(run_start), budget - 1)
        frac = min((info["stage2_seconds"] - start) / (budget - start), 1.0)
        lr = base_lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))
        opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = lr, lr * 10
        idx = np.sort(rng.choice(len(feats), cfg.stage2_batch, replace=False))
        r = int(rng.integers(len(cfg.steps)))
        step = cfg.steps[r]
        h_in = _rows(feats, idx)
        mixed = cfg.stage2_mix > 0 and rng.random() < cfg.stage2_mix
        if mixed:
            h_in = _cutmix(h_in, rng)
            targets, t = _teach(model, k, h_in, set(deeper))
        else:
            targets = {j: _rows(f, idx) for j, f in deeper.items()}
            t = torch.from_numpy(teacher[idx])
        h_std, rec_std, bits = _code(codec, h_in, step, noisy=False)
        h = (rec_std * codec.decoder.std + codec.decoder.mean).contiguous(
            memory_format=torch.channels_last
        )
        # float32: on this CPU (AVX-512 BF16) bfloat16 autocast measured 25 % slower per step
        kd, deep = suffix_distill(model, k, h, targets, deep_std, t, T)
        mse = F.mse_loss(rec_std, h_std)
        rate = cfg.lambda0 * step**2 * bits.mean() / numel
        loss = kd + cfg.stage2_deep * deep + cfg.stage2_mse * mse + rate
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        kd_sum += float(kd.detach())
        steps += 1
        spent = time.perf_counter() - t_block
        # save (and report) every 30 s, and when the budget is spent
        if spent > 30 or info["stage2_seconds"] + spent >= budget:
            info["stage2_seconds"] += spent
            info["stage2_steps"] += steps
            info.setdefault("stage2_kd", []).append(round(kd_sum / steps, 4))
            _save_state(state, codec, opt, info)
            _progress(
                f"arm {k + 1} stage 2: {info['stage2_steps']} steps, kd {kd_sum / steps:.4f}, "
                f"{info['stage2_seconds']:.0f}/{budget:.0f} s"
            )
            t_block, kd_sum, steps = time.perf_counter(), 0.0, 0
    codec.eval()
    return info


# ----------------------------------------------------------------------------- tables
@torch.inference_mode()
def latent_symbols(codec: ArmCodec, feats: Frames, rate: int, bs: int = 64) -> np.ndarray:
    out = []
    for s in range(0, len(feats), bs):
        h = torch.from_numpy(np.asarray(feats[s : s + bs], np.float32))
        out.append(codec.quantize(h, rate).numpy())
    return np.concatenate(out)


def fit_tables(
    codec: ArmCodec, feats: Frames, rate: int, n: int = 4000, context: bool = True
) -> Tables:
    """Tables of the training latents (a random ``n`` of them): checkerboard context tables
    or, with ``context`` off, factorized histograms; a margin of one symbol each side of
    what was seen and at most MAX_ALPHABET symbols per channel either way."""
    idx = np.sort(np.random.default_rng(rate).permutation(len(feats))[:n])
    q = latent_symbols(codec, feats[idx], rate)
    if context:
        return fit_context_tables(q)
    C = q.shape[1]
    half = MAX_ALPHABET // 2
    q = np.clip(q, -half + 1, half - 2)
    counts = np.zeros((C, MAX_ALPHABET), np.int64)
    for c in range(C):
        v, cnt = np.unique(q[:, c], return_counts=True)
        counts[c, v + half] = cnt
        lo, hi = int(v.min()) + half, int(v.max()) + half
        counts[c, lo - 1] = max(counts[c, lo - 1], 1)  # margin: one unseen symbol each side
        counts[c, hi + 1] = max(counts[c, hi + 1], 1)
    return ChannelTables.from_histograms(counts, np.full(C, -half, np.int32))


# ----------------------------------------------------------------------------- evaluation
@torch.inference_mode()
def code_through(
    model, k: int, codec: ArmCodec, coder: Coder, rate: int, h: torch.Tensor
) -> tuple[list[int], np.ndarray]:
    """A batch of arm ``k``'s prefix tensors the way the wire carries them: quantized, each
    frame coded to real bytes and decoded, dequantized, through the suffix → (payload sizes,
    the cloud's predictions)."""
    return code_symbols(model, k, codec, coder, rate, codec.quantize(h, rate).numpy())


def code_symbols(
    model, k: int, codec: ArmCodec, coder: Coder, rate: int, q: np.ndarray
) -> tuple[list[int], np.ndarray]:
    """:func:`code_through` from the batch's quantized latents ``q`` (for a caller that also
    codes the same symbols another way and need not run the encoder twice)."""
    sizes, dec = [], []
    for qi in q:
        payload = coder.encode(qi)
        sizes.append(len(payload))
        dec.append(coder.decode(payload, qi.shape))
    logits = model.suffix(codec.dequantize(torch.from_numpy(np.stack(dec)), rate), k)
    return sizes, logits.argmax(1).numpy()


@torch.inference_mode()
def evaluate_arm(
    model,
    k: int,
    codec: ArmCodec,
    tables: list[Tables],
    feats: np.ndarray,
    labels: np.ndarray,
    bs: int = 32,
) -> list[dict]:
    """Per rate point on cached test tensors: real coded bytes per frame (median, p95, mean),
    top-1 after encode → code → decode → suffix, and the top-1 agreement with the unsplit
    model's prediction is left to the caller."""
    rows = []
    for r, tab in enumerate(tables):
        coder = coder_for(tab)
        sizes, preds = [], []
        for s in range(0, len(feats), bs):
            h = torch.from_numpy(np.asarray(feats[s : s + bs], np.float32))
            n_bytes, pred = code_through(model, k, codec, coder, r, h)
            sizes += n_bytes
            preds.append(pred)
        pred = np.concatenate(preds)
        sizes_a = np.array(sizes)
        rows.append(
            {
                "rate": r,
                "step": codec.steps[r],
                "bytes_median": int(np.median(sizes_a)),
                "bytes_p95": int(np.percentile(sizes_a, 95)),
                "bytes_mean": round(float(sizes_a.mean()), 1),
                "top1": round(float((pred == labels).mean()), 4),
            }
        )
    return rows


@torch.inference_mode()
def decoder_cpu_ms(codec: ArmCodec, repeats: int = 5) -> float:
    z = torch.zeros(1, *codec.spec.latent_shape)
    codec.decoder(z)
    t = time.perf_counter()
    for _ in range(repeats):
        codec.decoder(z)
    return round((time.perf_counter() - t) / repeats * 1000, 2)


# ----------------------------------------------------------------------------- the whole run
def arm_spec(in_shape: tuple[int, int, int], cfg: BottleneckTrainConfig) -> CodecSpec:
    """The codec an arm gets: scalar for small tensors (side ≤ ``cfg.scalar_side``)."""
    return scalar_spec(in_shape) if in_shape[1] <= cfg.scalar_side else default_spec(in_shape)


def _subset(x: np.ndarray, y: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random ``n`` frames, in order (the splits are sorted by class)."""
    if n >= len(y):
        return x, y
    idx = np.sort(np.random.default_rng(seed).permutation(len(y))[:n])
    return x[idx], y[idx]


def train_bottlenecks(
    model_path: Path,
    cfg: BottleneckTrainConfig,
    train_set: Dataset,
    test_set: Dataset,
    out: Path,
    work_dir: Path,
    jpeg_bytes: np.ndarray | None = None,
    cache_only: bool = False,
) -> dict:
    """Train (or resume) every arm's codec, fit tables, measure, write checkpoint + card.

    ``cache_only``: build the feature cache and stop (returns ``{}``), so that runs training
    different arms in parallel start from a complete cache instead of each extracting it."""
    import copy

    from splitee.files import sha256_file
    from splitee.machine import machine_description
    from splitee.models import load_checkpoint
    from splitee.models.bottleneck_checkpoint import save_bottlenecks

    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    model = load_checkpoint(model_path)
    for p in model.parameters():
        p.requires_grad_(False)
    digest = sha256_file(model_path)
    # keyed by what the cache holds: another model, frame count or view recipe never reuses it
    n_train = min(cfg.limit or len(train_set), len(train_set))
    n_test = min(cfg.test_limit or len(test_set), len(test_set))
    views = f"v{cfg.views}" + (AUGMENT_RECIPE if cfg.views > 2 else "")
    run = f"{digest[:16]}-n{n_train}-{views}-d{cfg.distorted_frames}-s{cfg.seed}"
    work = Path(work_dir) / run  # codec states and cards: per model, frames and views
    test_dir = Path(work_dir) / f"{digest[:16]}-test-t{n_test}-s{cfg.seed}"
    fused = copy.deepcopy(model).fuse_for_inference()
    fused.backbone.to(memory_format=torch.channels_last)

    images, labels = train_set.images, train_set.labels
    if cfg.limit:
        images, labels = _subset(images, labels, cfg.limit, cfg.seed)
    test_images, test_labels = test_set.images, test_set.labels
    if cfg.test_limit:
        test_images, test_labels = _subset(test_images, test_labels, cfg.test_limit, cfg.seed)
    t0 = time.perf_counter()
    build_cache(
        fused, images, work / "train", cfg.views, cfg.seed, cfg.extract_batch, cfg.distorted_frames
    )
    build_cache(fused, test_images, test_dir, 1, cfg.seed, cfg.extract_batch, 0)
    extract_s = time.perf_counter() - t0
    if cache_only:
        _progress(f"cache complete under {work}")
        return {}
    teacher = _load_logits(work / "train", cfg.views)
    test_teacher = _load_logits(test_dir, 1)

    L = model.num_exits
    arms = cfg.arms if cfg.arms is not None else list(range(L - 1))
    specs = [arm_spec(tuple(model.feature_shape(k)), cfg) for k in range(L - 1)]
    bn = Bottlenecks(specs, cfg.steps)
    per_arm = []
    tables: dict[int, list[Tables]] = {}
    # arms finished by an earlier run (their card is written) go into the checkpoint too, so
    # `--arms` can give one arm more time without dropping the others
    # (states and cards are keyed by the codec's shape: another shape never resumes from them)
    # (a scalar codec has nothing to train: it is always in, its statistics read from the cache)
    done = [
        k
        for k in range(L - 1)
        if (work / f"arm{k}-{specs[k].tag}.card.json").exists() or not bn.trainable(k)
    ]
    for k in sorted(set(arms) | set(done)):
        codec = bn.codecs[k]
        feats = _load_view_arm(work / "train", cfg.views, k)
        state = work / f"arm{k}-{specs[k].tag}.safetensors"
        card_file = work / f"arm{k}-{specs[k].tag}.card.json"
        t_arm = time.perf_counter()
        if not bn.trainable(k):
            codec.set_statistics(*_stats(feats))
            info = {"kind": "scalar", "gain": codec.spec.gain}
            codec.eval()
        elif k in arms:
            info = train_stage1(codec, feats, cfg, state)
            deeper = {}
            if cfg.stage2_deep > 0:
                deeper = {
                    j: _load_view_arm(work / "train", cfg.views, j) for j in range(k + 1, L - 1)
                }
            info = train_stage2(fused, k, codec, feats, deeper, teacher, cfg, state)
        else:
            info = _load_state(state, codec, _optimizer(codec, cfg.lr))
            codec.eval()
        tables[k] = [
            fit_tables(codec, feats, r, context=cfg.context) for r in range(len(cfg.steps))
        ]
        coding = coding_name(tables[k][0])
        # (a scalar codec has no state: its card stands while the cache and frames do)
        if card_file.exists() and (
            not state.exists() or card_file.stat().st_mtime >= state.stat().st_mtime
        ):
            old = json.loads(card_file.read_text())
            # measured after its last step, on the same test frames at the same rate points
            if (
                old.get("test_frames") == len(test_labels)
                and old.get("coding") == coding
                and [r["step"] for r in old["rates"]] == list(codec.steps)
            ):
                per_arm.append(old)
                continue
        test_feats = np.load(test_dir / f"view0-arm{k}.npy", mmap_mode="r")
        rows = evaluate_arm(fused, k, codec, tables[k], test_feats, test_labels)
        teacher_top1 = float((test_teacher.argmax(1) == test_labels).mean())
        enc_flops = module_flops(codec.encoder, codec.spec.in_shape)
        dec_flops = module_flops(codec.decoder, codec.spec.latent_shape)
        arm_row = {
            "arm": k + 1,
            "in_shape": list(codec.spec.in_shape),
            "latent_shape": list(codec.spec.latent_shape),
            "encoder_flops": enc_flops,
            "decoder_flops": dec_flops,
            "decoder_cpu_ms": decoder_cpu_ms(codec),
            "unsplit_top1": round(teacher_top1, 4),
            "test_frames": len(test_labels),
            "coding": coding,
            "rates": rows,
            "training": info,
            "train_seconds": round(time.perf_counter() - t_arm, 1),
        }
        per_arm.append(arm_row)
        _progress(f"arm {k + 1}: {json.dumps(rows)}")
        card_file.write_text(json.dumps(arm_row, indent=2))
    card = {
        "base_checkpoint": Path(model_path).name,
        "base_sha256": digest,
        "coder": "constriction ANS (rANS, 32-bit words), integer tables of 16-bit frequencies",
        "coding": "checkerboard" if cfg.context else "factorized",
        "steps": cfg.steps,
        "arms": per_arm,
        "jpeg_bytes_median": int(np.median(jpeg_bytes)) if jpeg_bytes is not None else None,
        "training": {
            "config": asdict(cfg),
            "train_frames": len(labels),
            "test_frames": len(test_labels),
            "extract_seconds": round(extract_s, 1),
            "total_seconds": round(time.perf_counter() - t_start, 1),
            "machine": machine_description(),
        },
    }
    save_bottlenecks(bn, tables, out, model_path, digest, card)
    return card
