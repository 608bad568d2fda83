"""Benchmark: arm 1's latent at a rate chosen per frame, against cloud-only. One JSON line.

Why: the deployed rate point of arm 1 (the coarsest, Δ = 6) loses 2–3 points to the unsplit
model under mild noise where the finer Δ = 4 loses under one, and coding every frame at Δ = 4
costs more than sending the JPEG. This measures, on the whole test split and every default
setting (distorted as ``splitee evaluate`` distorts them, seed 0), arm 1 at each threshold α
of the grid with its offloads coded by a per-frame rule, side by side with cloud-only on the
same frames: accuracy, the gap to cloud-only (points), cost as ``splitee evaluate`` prices it
(λ₁ from the prefix's and the encoder's FLOPs, γ and o the papers', each offload at its own
coded bytes over the median JPEG; cloud-only at each frame's JPEG) and mean bytes per frame.

Rules: ``d6`` / ``d4`` (every offload at that step), ``noisy-context`` (Δ = 4 where
:func:`splitee.context.frame_context` says noisy), ``conf<τ`` (Δ = 4 where exit 1's own
confidence is under τ — the edge has it for free: it computed exit 1 to decide).

Usage: python bench/rate_rule.py [--images ZIP] [--limit N] [--out JSON]
Frames: ``SPLITEE_DATA__IMAGES`` (Caltech-101's zip) or ``--images``. About 3.5 min a setting
on two cores; per-setting outputs are cached under ``data.cache_dir/rate_rule``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policy_store import CostModel  # noqa: E402
from splitee.cli.backbone_train import jpeg_sizes  # noqa: E402
from splitee.context import frame_context  # noqa: E402
from splitee.distortions import Distortion  # noqa: E402
from splitee.evaluate.rate_accuracy import subset_indices  # noqa: E402
from splitee.files import sha256_file  # noqa: E402
from splitee.images import load_images, open_source  # noqa: E402
from splitee.machine import machine_description  # noqa: E402
from splitee.models import load_checkpoint  # noqa: E402
from splitee.models.bottleneck_checkpoint import load_bottlenecks  # noqa: E402
from splitee.models.inputs import to_input  # noqa: E402
from splitee.models.latent_codec import LatentCodec, encoder_flops  # noqa: E402
from splitee.models.profile import prefix_flops, relative_costs  # noqa: E402
from splitee.settings import load_settings  # noqa: E402

BASE = ROOT / "assets/efficientnet-lite0-caltech101.safetensors"
BOTTLENECK = ROOT / "assets/efficientnet-lite0-caltech101-bottleneck.safetensors"
SETTINGS = ["pristine", "noise:0.05", "noise:0.1", "noise:0.2", "blur:0.5", "blur:1.0", "blur:1.5"]
ALPHAS = (0.7, 0.8, 0.9, 0.95)
FINE, COARSE = 2, 3  # rate indices of Δ = 4 and Δ = 6


@torch.inference_mode()
def frame_outputs(model, bundle, x: np.ndarray, bs: int = 32) -> dict[str, np.ndarray]:
    """Per frame: context, exit 1's confidence and prediction, the final exit's prediction,
    and arm 1's cloud answer and message bytes at the fine and the coarse step."""
    codecs = {r: LatentCodec(bundle, {0: r}) for r in (FINE, COARSE)}
    cols: dict[str, list] = {k: [] for k in ("c1", "p1", "pf", "p4", "p6", "b4", "b6")}
    for s in tqdm(range(0, len(x), bs), desc="frames", mininterval=30):
        h = to_input(x[s : s + bs])
        for k in range(model.num_exits):
            h = model.segment(h, k)
            if k == 0:
                h1 = h
                c, p = model.exit_logits(h, 0).float().softmax(1).max(1)
                cols["c1"].append(c.numpy())
                cols["p1"].append(p.numpy())
        cols["pf"].append(model.exit_logits(h, model.num_exits - 1).argmax(1).numpy())
        for r, tag in ((FINE, "4"), (COARSE, "6")):
            msgs = codecs[r].encode(h1, 0)
            cols["b" + tag].append(np.array([len(m) for m in msgs]))
            q = torch.from_numpy(np.stack([codecs[r].symbols(m, 0) for m in msgs]))
            cols["p" + tag].append(model.suffix(codecs[r].reconstruct(q, 0), 0).argmax(1).numpy())
    out = {k: np.concatenate(v) for k, v in cols.items()}
    out["ctx"] = np.array([frame_context(im) for im in x])
    return out


def rules(z: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Which frames each rule codes at the fine step."""
    n = len(z["c1"])
    return {
        "d6": np.zeros(n, bool),
        "d4": np.ones(n, bool),
        "noisy-context": z["ctx"] == "noisy",
        "conf<0.3": z["c1"] < 0.3,
        "conf<0.5": z["c1"] < 0.5,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=os.environ.get("SPLITEE_DATA__IMAGES"))
    ap.add_argument("--limit", type=int, default=None, help="a seeded random N test frames")
    ap.add_argument("--out", type=Path, default=None, help="also write the line here")
    a = ap.parse_args()
    if a.images is None:
        ap.error("give --images or SPLITEE_DATA__IMAGES (Caltech-101's zip)")
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    s = load_settings(None)
    bundle = load_bottlenecks(BOTTLENECK, BASE)
    model = copy.deepcopy(load_checkpoint(BASE)).fuse_for_inference()
    src = open_source(a.images, "test")
    frames = load_images(src, 224, s.data.cache_dir / "images")
    x_all, y = frames.images, frames.labels
    jpeg = np.asarray(jpeg_sizes(src), dtype=np.float64)
    if a.limit and a.limit < len(y):
        idx = subset_indices(len(y), a.limit)  # the frames `--limit` keeps everywhere
        x_all, y, jpeg = x_all[idx], y[idx], jpeg[idx]
    # λ₁ as `splitee evaluate` prices it: the prefix's and the encoder's FLOPs
    rel = relative_costs(model)
    rel[0] += encoder_flops(bundle, [0])[0] / prefix_flops(model, model.num_exits - 1)
    cm = CostModel(
        depths=(0, *model.exit_depths),
        gamma=s.policy.gamma,
        mu=s.policy.mu,
        alpha=0.7,
        offload_cost=0.5,
        relative_cost=(0.0, *rel),
    )
    lam1, o, ref = float(cm.compute_cost[1]), 0.5, float(np.median(jpeg))
    cloud_cost = o * float(jpeg.mean()) / ref
    key = hashlib.sha256(
        f"{sha256_file(BASE)}|{sha256_file(BOTTLENECK)}|{len(y)}".encode()
    ).hexdigest()[:16]
    cache = s.data.cache_dir / "rate_rule" / key
    cache.mkdir(parents=True, exist_ok=True)
    results = {}
    for spec in SETTINGS:
        path = cache / f"{spec.replace(':', '_')}.npz"
        if path.exists():
            with np.load(path, allow_pickle=False) as f:
                z = dict(f)
        else:
            d = Distortion.parse(spec)
            x = x_all if d.kind == "pristine" else d.apply(x_all, seed=0)
            z = frame_outputs(model, bundle, x)
            np.savez(path, **z)
        cloud = float((z["pf"] == y).mean())
        row = {"cloud_only": {"top1": round(100 * cloud, 2), "cost": round(cloud_cost, 3)}}
        for name, fine in rules(z).items():
            pred_off = np.where(fine, z["p4"], z["p6"])
            bytes_off = np.where(fine, z["b4"], z["b6"])
            for alpha in ALPHAS:
                keep = z["c1"] >= alpha
                acc = float((np.where(keep, z["p1"], pred_off) == y).mean())
                per_frame = float(np.where(keep, 0, bytes_off).mean())
                row[f"{name}@{alpha}"] = {
                    "top1": round(100 * acc, 2),
                    "under_cloud_only": round(100 * (cloud - acc), 2),
                    "cost": round(lam1 + o * per_frame / ref, 3),
                    "bytes_per_frame": round(per_frame),
                }
        results[spec] = row
    line = json.dumps(
        {
            "bench": "rate_rule",
            "bottleneck": BOTTLENECK.name,
            "frames": len(y),
            "lambda1": round(lam1, 4),
            "jpeg_bytes_median": ref,
            "results": results,
            "seconds": round(time.perf_counter() - t0, 1),
            "machine": machine_description(),
        }
    )
    print(line)
    if a.out:
        a.out.write_text(line + "\n")


if __name__ == "__main__":
    main()
