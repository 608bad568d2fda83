"""Benchmark: the shipped bottleneck on the whole test split. One JSON line.

The model card measures every arm's codec on a seeded 1,000 of the test frames (the training
run's time goes to training). The issue's acceptance is on the whole split, so this measures
the same thing there, side by side with the unsplit model on the same frames: per arm and
rate point, the median coded payload (its ratio to the camera JPEG's median) and top-1 after
encode → code → decode → suffix (its drop against the unsplit model's, and the share of frames
where the cloud's prediction equals the unsplit model's). With checkerboard context tables it
also codes the same symbols with each channel's anchor table alone (a factorized code, the
channel's marginal) and reports those bytes beside: what the contexts save, in the same run.

Usage: python bench/codec_split.py [--bottleneck CKPT] [--images ZIP] [--limit N] [--arms 1,2]
       [--distortion noise:0.2] [--out JSON]

``--distortion``: the frames distorted as ``splitee evaluate`` distorts them (its default seed,
0), so a codec's top-1 under noise or blur at every rate point, beside the unsplit model's on
the same distorted frames.
Frames: ``SPLITEE_DATA__IMAGES`` (Caltech-101's zip) or ``--images``.
"""

from __future__ import annotations

import argparse
import copy
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

from splitee.checkerboard import ContextTables  # noqa: E402
from splitee.cli.backbone_train import jpeg_sizes  # noqa: E402
from splitee.coding_tables import coder_for  # noqa: E402
from splitee.distortions import Distortion  # noqa: E402
from splitee.entropy import LatentCoder  # noqa: E402
from splitee.evaluate.rate_accuracy import subset_indices  # noqa: E402
from splitee.images import load_images, open_source  # noqa: E402
from splitee.machine import machine_description  # noqa: E402
from splitee.models import load_checkpoint  # noqa: E402
from splitee.models.bottleneck_checkpoint import load_bottlenecks  # noqa: E402
from splitee.models.inputs import to_input  # noqa: E402
from splitee.settings import load_settings  # noqa: E402
from splitee.training.bottleneck import code_symbols  # noqa: E402

BASE = ROOT / "assets/efficientnet-lite0-caltech101.safetensors"
BOTTLENECK = ROOT / "assets/efficientnet-lite0-caltech101-bottleneck.safetensors"


def measure(
    bottleneck: Path,
    images: Path,
    limit: int | None,
    only: list[int] | None = None,
    bs: int = 32,
    distortion: Distortion | None = None,
) -> dict:
    bundle = load_bottlenecks(bottleneck, BASE)
    model = copy.deepcopy(load_checkpoint(BASE)).fuse_for_inference()
    s = load_settings(None)
    src = open_source(images, "test")
    frames = load_images(src, 224, s.data.cache_dir / "images")
    x_all, y = frames.images, frames.labels
    if limit and limit < len(y):
        idx = subset_indices(len(y), limit)  # the frames `--limit` keeps everywhere
        x_all, y = x_all[idx], y[idx]
    if distortion is not None:
        x_all = distortion.apply(x_all, seed=0)
    bn, arms = bundle.bottlenecks, bundle.arms
    if only is not None:
        arms = [k for k in arms if k + 1 in only]
    coders = {k: [coder_for(t) for t in bundle.tables[k]] for k in arms}
    # the same symbols under each channel's anchor table alone: a factorized code beside
    factorized = {
        k: [LatentCoder(t.anchors) for t in bundle.tables[k] if isinstance(t, ContextTables)]
        for k in arms
    }
    sizes = {(k, r): [] for k in arms for r in range(bn.num_rates)}
    fsizes = {(k, r): [] for k in arms for r in range(bn.num_rates)}
    preds = {(k, r): [] for k in arms for r in range(bn.num_rates)}
    unsplit = []
    with torch.inference_mode():
        for s0 in tqdm(range(0, len(y), bs), desc="codec on the test split", mininterval=30):
            h, feats = to_input(x_all[s0 : s0 + bs]), {}
            for j in range(model.num_exits):
                h = model.segment(h, j)
                if j in coders:
                    feats[j] = h
            unsplit.append(model.exit_logits(h, model.num_exits - 1).argmax(1).numpy())
            for k in arms:
                codec = bn.codecs[k]
                for r, coder in enumerate(coders[k]):
                    q = codec.quantize(feats[k], r).numpy()  # once: both coders take it
                    n_bytes, pred = code_symbols(model, k, codec, coder, r, q)
                    sizes[k, r] += n_bytes
                    preds[k, r].append(pred)
                    if factorized[k]:
                        fcoder = factorized[k][r]
                        fsizes[k, r] += [len(fcoder.encode(qi)) for qi in q]
    u = np.concatenate(unsplit)
    u_top1 = float((u == y).mean())
    jpeg = float(np.median(jpeg_sizes(src)))
    rows = []
    for (k, r), p in preds.items():
        pred = np.concatenate(p)
        top1 = float((pred == y).mean())
        b = float(np.median(sizes[k, r]))
        row = {
            "arm": k + 1,
            "step": bn.steps[r],
            "bytes_median": int(b),
            "bytes_vs_jpeg": round(b / jpeg, 4),
            "top1": round(top1, 4),
            "drop_points": round(100 * (u_top1 - top1), 2),
            "agrees_with_unsplit": round(float((pred == u).mean()), 4),
        }
        if fsizes[k, r]:
            fb = float(np.median(fsizes[k, r]))
            row["factorized_bytes_median"] = int(fb)
            ratio = float(np.sum(sizes[k, r])) / float(np.sum(fsizes[k, r]))
            row["context_vs_factorized"] = round(ratio, 4)
        rows.append(row)
    return {
        "frames": len(y),
        "unsplit_top1": round(u_top1, 4),
        "jpeg_bytes_median": jpeg,
        "rates": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bottleneck", type=Path, default=BOTTLENECK)
    ap.add_argument("--images", type=Path, default=os.environ.get("SPLITEE_DATA__IMAGES"))
    ap.add_argument("--limit", type=int, default=None, help="a seeded random N test frames")
    ap.add_argument("--arms", default=None, help="1-based split arms to measure (default all)")
    ap.add_argument("--distortion", default=None, help="e.g. noise:0.2 (default: pristine)")
    ap.add_argument("--out", type=Path, default=None, help="also write the line here")
    a = ap.parse_args()
    if a.images is None:
        ap.error("give --images or SPLITEE_DATA__IMAGES (Caltech-101's zip)")
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    only = None if a.arms is None else [int(v) for v in a.arms.split(",")]
    distortion = None if a.distortion is None else Distortion.parse(a.distortion)
    out = measure(a.bottleneck, a.images, a.limit, only, distortion=distortion)
    out = {
        "bench": "codec_split",
        "bottleneck": a.bottleneck.name,
        "distortion": str(distortion or "pristine"),
        **out,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine_description(),
    }
    line = json.dumps(out)
    print(line)
    if a.out:
        a.out.write_text(line + "\n")


if __name__ == "__main__":
    main()
