"""Train exits for a pretrained backbone on real-size frames, within a CPU budget.

What must be frozen is frozen: the pretrained backbone up to the last exit runs once per
training pass (BatchNorm folded, channels-last, bfloat16 autocast) and its outputs are cached;
the exit heads, and optionally the backbone's last stage(s) after the last exit with a new
classifier, train for many epochs on the cache. That turns hours of CPU back-propagation into
minutes:

1. decode and fit every training frame to the model's input size (cached as .npy);
2. cache passes: pass 0 the clean frames, each further pass random distortions (Gaussian noise
   σ ∈ [0.02, 0.25] or Gaussian blur σ ∈ [0.3, 2.0] px, per chunk of frames, plus horizontal
   flips), so the heads see what the evaluator will throw at them. Per frame the cache holds
   each exit's input pooled to the heads' 7×7 (:class:`~splitee.models.split_backbone.PooledHead`
   pools first) and the features at the last exit in full;
3. train heads and the tail (sum of the exits' cross-entropies, AdamW, cosine schedule);
4. fit one temperature per exit on held-out training frames (clean and distorted);
5. write the checkpoint (only what the weights package does not hold) and the model card:
   per-exit accuracy on the test split, clean and under each evaluation distortion, FLOPs and
   measured CPU time of every prefix, bytes of every split tensor against the median JPEG.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from splitee.data import Dataset
from splitee.distortions import EVAL_DISTORTIONS, Distortion
from splitee.machine import machine_description
from splitee.models.inputs import to_input
from splitee.models.split_backbone import PooledHead, SplitBackboneNet


@dataclass(kw_only=True)
class BackboneTrainConfig:
    backbone: str = "efficientnet-lite0"
    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    lr_tail: float = 5e-4
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    augment_passes: int = 3  # distorted cache passes after the clean one (0: clean only)
    # train the backbone after the last exit too, not only its classifier (slow on a CPU)
    finetune_tail: bool = False
    holdout_fraction: float = 0.1
    extract_batch: int = 32
    threads: int = 2
    seed: int = 0
    limit: int | None = None  # first N training frames only (smoke runs)
    test_limit: int | None = None
    eval_distortions: list[str] = field(default_factory=lambda: list(EVAL_DISTORTIONS))


def _progress(msg: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _random_distort(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random distortion (noise or blur at a random level) and random flips for a chunk."""
    if rng.random() < 0.5:
        d = Distortion("noise", float(rng.uniform(0.02, 0.25)))
    else:
        d = Distortion("blur", float(rng.uniform(0.3, 2.0)))
    out = d.apply(images, seed=int(rng.integers(1 << 31)))
    flip = rng.random(len(out)) < 0.5
    out[flip] = out[flip, :, ::-1]
    return out


def classifier_path(model: SplitBackboneNet) -> str:
    """Module path of the backbone's classifier: the module of the last parameter it uses."""
    return [n for n, _ in model._segments[-1].named_parameters()][-1].rsplit(".", 1)[0]


@torch.inference_mode()
def extract(
    frozen: SplitBackboneNet, images: np.ndarray, cfg: BackboneTrainConfig, desc: str
) -> list[np.ndarray]:
    """float16 arrays per frame: PooledHead.pool of every early exit's features, then the tail's
    input — the last exit's features when the tail is fine-tuned, else the classifier's input."""
    L = frozen.num_exits
    outs: list[list[np.ndarray]] = [[] for _ in range(L)]
    seen: list[torch.Tensor] = []
    clf = frozen.backbone.get_submodule(classifier_path(frozen))
    hook = clf.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    try:
        for s in tqdm(range(0, len(images), cfg.extract_batch), desc=desc, mininterval=30):
            x = to_input(images[s : s + cfg.extract_batch]).contiguous(
                memory_format=torch.channels_last
            )
            with torch.autocast("cpu", dtype=torch.bfloat16):
                h = x
                for k in range(L - 1):
                    h = frozen.segment(h, k)
                    outs[k].append(PooledHead.pool(h).float().half().numpy())
                if cfg.finetune_tail:
                    outs[L - 1].append(h.float().half().contiguous().numpy())
                else:
                    seen.clear()
                    frozen.segment(h, L - 1)
                    outs[L - 1].append(seen[-1].float().half().numpy())
    finally:
        hook.remove()
    return [np.concatenate(o) for o in outs]


class Tail(nn.Module):
    """The trainable part after the last early exit: the backbone's own segment to the final
    logits (fine-tuning; its modules are the model's), or its classifier alone on cached
    inputs, with the backbone's dropout in front as in its forward."""

    def __init__(self, model: SplitBackboneNet, finetune: bool, dropout: float = 0.2) -> None:
        super().__init__()
        self.model = model
        self.finetune = finetune
        self.dropout = dropout
        self.clf = model.backbone.get_submodule(classifier_path(model))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.finetune:
            return self.model.segment(h, self.model.num_exits - 1)
        return self.clf(F.dropout(h, self.dropout, self.training))


def _tail_params(model: SplitBackboneNet, finetune: bool) -> list[nn.Parameter]:
    """Parameters used after the last early exit: all of them, or the classifier's only."""
    ordered = [n for n, _ in model._segments[-1].named_parameters()]
    if not finetune:  # the module of the tail's last parameter: the classifier
        last = ordered[-1].rsplit(".", 1)[0] + "."
        ordered = [n for n in ordered if n.startswith(last)]
    named = dict(model.backbone.named_parameters())
    return [named[n] for n in ordered]


def train_heads(
    model: SplitBackboneNet,
    feats: list[np.ndarray],
    labels: np.ndarray,
    cfg: BackboneTrainConfig,
) -> list[dict]:
    """Train exit heads (on pooled maps) and the tail (on the last exit's features)."""
    L = model.num_exits
    for p in model.parameters():
        p.requires_grad_(False)
    tail_params = _tail_params(model, cfg.finetune_tail)
    head_params = [p for h in model.exits for p in h.parameters()]
    for p in [*tail_params, *head_params]:
        p.requires_grad_(True)
    lr_tail = cfg.lr_tail if cfg.finetune_tail else cfg.lr
    opt = torch.optim.AdamW(
        [
            {"params": head_params, "lr": cfg.lr},
            {"params": tail_params, "lr": lr_tail},
        ],
        weight_decay=cfg.weight_decay,
    )
    n = len(labels)
    steps = cfg.epochs * ((n + cfg.batch_size - 1) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[cfg.lr, lr_tail], total_steps=steps, pct_start=0.1
    )
    rng = np.random.default_rng(cfg.seed)
    y_all = torch.from_numpy(labels)
    history = []
    tail = Tail(model, cfg.finetune_tail)
    for epoch in range(cfg.epochs):
        model.train()
        model.backbone.eval()  # frozen statistics before the tail; the tail's are set below
        for mod in model._segments[-1].modules():
            if isinstance(mod, nn.BatchNorm2d | nn.Dropout):
                mod.train(cfg.finetune_tail)
        tail.train()
        perm = rng.permutation(n)
        tot, correct = 0.0, np.zeros(L)
        t0 = time.perf_counter()
        for s in range(0, n, cfg.batch_size):
            idx = perm[s : s + cfg.batch_size]
            y = y_all[idx]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = [
                    model.exits[k].from_pooled(torch.from_numpy(feats[k][idx]).float())
                    for k in range(L - 1)
                ]
                logits.append(tail(torch.from_numpy(feats[L - 1][idx]).float()))
                loss = sum(
                    F.cross_entropy(z.float(), y, label_smoothing=cfg.label_smoothing)
                    for z in logits
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
            correct += np.array([float((z.argmax(1) == y).sum()) for z in logits])
        row = {
            "epoch": epoch + 1,
            "loss": round(tot / n, 4),
            "train_acc": [round(float(c) / n, 4) for c in correct],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        history.append(row)
        _progress(f"epoch {row['epoch']}/{cfg.epochs} loss {row['loss']} acc {row['train_acc']}")
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    return history


@torch.no_grad()
def cached_logits(
    model: SplitBackboneNet, feats: list[np.ndarray], finetune: bool, bs: int = 256
) -> torch.Tensor:
    """(N, L, classes) logits of every exit from cached features, in eval mode, untempered."""
    model.eval()
    tail = Tail(model, finetune).eval()
    L = model.num_exits
    out = []
    for s in range(0, len(feats[0]), bs):
        zs = [
            model.exits[k].from_pooled(torch.from_numpy(feats[k][s : s + bs]).float())
            for k in range(L - 1)
        ]
        zs.append(tail(torch.from_numpy(feats[L - 1][s : s + bs]).float()))
        out.append(torch.stack(zs, 1))
    return torch.cat(out)


def train_backbone(
    cfg: BackboneTrainConfig,
    train_set: Dataset,
    test_set: Dataset,
    out: Path,
    cache_dir: Path | None,
    jpeg_bytes: np.ndarray | None = None,
    weights: Path | None = None,
) -> dict:
    """The whole run; returns the model card (also written beside the checkpoint).

    ``jpeg_bytes``: the test frames' JPEG sizes, for the card's bytes table; ``weights``: a
    state dict for a backbone without weights of its own (mobilenet_v2)."""
    from splitee.evaluate.outputs import exit_outputs
    from splitee.files import sha256_file
    from splitee.models.backbones import build_model, get
    from splitee.models.checkpoint import save_checkpoint
    from splitee.models.profile import profile_model
    from splitee.training.train import fit_temperatures

    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    num_classes = int(train_set.labels.max()) + 1
    entry = get(cfg.backbone)
    pretrained = entry.package_weights or weights is not None
    model, loaded = build_model(cfg.backbone, num_classes, pretrained, weights)
    # weights that come from an installed package stay out of the checkpoint (hash-checked at
    # load); a user's own weights file or factory weights go in whole
    base, base_sha = None, None
    if entry.package_weights and loaded:
        base = {k: v.clone() for k, v in model.backbone.state_dict().items()}
        base_sha = loaded.rsplit(" ", 1)[-1]
    _progress(f"{cfg.backbone}: {loaded}; {len(train_set)} train / {len(test_set)} test frames")

    images, labels = train_set.images, train_set.labels
    if cfg.limit:
        images, labels = images[: cfg.limit], labels[: cfg.limit]
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(len(labels))
    n_hold = max(1, int(len(labels) * cfg.holdout_fraction))
    hold, fit = np.sort(perm[:n_hold]), np.sort(perm[n_hold:])

    frozen = copy.deepcopy(model).fuse_for_inference()
    frozen.backbone.to(memory_format=torch.channels_last)
    passes: list[list[np.ndarray]] = []
    t0 = time.perf_counter()
    for p in range(1 + cfg.augment_passes):
        if p == 0:
            imgs = images
        else:
            chunks = [_random_distort(images[s : s + 64], rng) for s in range(0, len(images), 64)]
            imgs = np.concatenate(chunks)
        passes.append(extract(frozen, imgs, cfg, f"cache pass {p + 1}/{1 + cfg.augment_passes}"))
        _progress(f"cache pass {p + 1}: {time.perf_counter() - t0:.0f} s so far")
    del frozen
    L = model.num_exits
    feats_fit = [np.concatenate([ps[k][fit] for ps in passes]) for k in range(L)]
    labels_fit = np.concatenate([labels[fit]] * len(passes))
    feats_hold = [np.concatenate([ps[k][hold] for ps in passes]) for k in range(L)]
    labels_hold = np.concatenate([labels[hold]] * len(passes))
    extract_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    history = train_heads(model, feats_fit, labels_fit, cfg)
    train_s = time.perf_counter() - t1
    temps = fit_temperatures(
        cached_logits(model, feats_hold, cfg.finetune_tail), torch.from_numpy(labels_hold)
    )
    model.temperature.copy_(temps)
    _progress(f"temperatures {[round(float(t), 3) for t in temps]}")

    out = Path(out)
    save_checkpoint(model, out, None, base=base, base_sha256=base_sha)
    digest = sha256_file(out)

    _progress("exit accuracies on the test split, clean and distorted")
    test_images, test_labels = test_set.images, test_set.labels
    if cfg.test_limit:
        test_images, test_labels = test_images[: cfg.test_limit], test_labels[: cfg.test_limit]
    evalm = copy.deepcopy(model).fuse_for_inference()
    per_setting = {}
    for spec in cfg.eval_distortions:
        d = Distortion.parse(spec)
        o = exit_outputs(evalm, test_images, d, 0, cache_dir, digest, batch_size=32)
        acc = o.correct(test_labels).mean(axis=0)
        per_setting[str(d)] = [round(float(a), 4) for a in acc]
        _progress(f"{d}: {per_setting[str(d)]}")
    prof = profile_model(evalm, jpeg_bytes)
    card = {
        "backbone": cfg.backbone,
        "pretrained": loaded,
        "classes": num_classes,
        "exit_paths": model.exit_paths,
        "exit_depths": model.exit_depths,
        "exit_placement": EXIT_NOTES.get(cfg.backbone, ""),
        "input": f"{model.input_size}x{model.input_size} RGB, shorter side resized, centre crop",
        "final_exit_accuracy": per_setting["pristine"][-1],
        "exit_accuracy": per_setting,
        "temperatures": [round(float(t), 4) for t in temps],
        "profile": prof,
        "training": {
            "config": asdict(cfg),
            "train_frames": len(fit),
            "holdout_frames": len(hold),
            "cache_passes": len(passes),
            "history": history,
            "extract_seconds": round(extract_s, 1),
            "train_seconds": round(train_s, 1),
            "total_seconds": round(time.perf_counter() - t_start, 1),
            "machine": machine_description(),
        },
        "data": {"train": train_set.source, "test": test_set.source},
    }
    save_checkpoint(model, out, card, base=base, base_sha256=base_sha)
    return card


EXIT_NOTES = {
    "efficientnet-lite0": (
        "Exits after the last MBConv block of stages 2-6 (_blocks.2, .4, .7, .10, .14): a stage "
        "boundary is where resolution or width changes, so each exit sees a new level of "
        "features and the split tensor is smallest for its depth. Stage 1 (16x112x112, larger "
        "than the input frame) and stage 7 (one block before the head, 94 % of the FLOPs) "
        "would add arms no policy should pick."
    ),
}
