"""Benchmark: the edge's model on torch eager, ONNX Runtime fp32 and int8. One JSON line.

For the CIFAR ResNet-56 (32×32 frames) and the real-size EfficientNet-Lite0 (224×224), at batch
1 and 16, side by side in one run: frames/s and per-frame latency of what the edge step calls
per batch — :class:`splitee.models.torch_edge.TorchEdgeModel` (the fused torch model's early
exit) against :class:`splitee.onnx_edge.OnnxEdgeModel` on the fp32 and int8 graphs of
``splitee export`` — every frame at the same arm (default the final one, whose graph computes
every exit: the most work an edge does), side observations on. Same thread count for both
runtimes (``--threads``, default 1 as edge.threads). Frames are the shipped samples', decoded
as the edge decodes them; the int8 graphs are calibrated on the same samples (speed does not
depend on it; ``splitee export --int8`` calibrates on the training split and reports accuracy).

The exports go to ``--export-dir`` (reused when their manifest is there) or a temporary folder.

Usage: .venv/bin/python bench/edge_runtime.py [--reps 30] [--threads 1] [--arm N]
       [--export-dir DIR] [--models r56,lite0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from splitee.data import load_source
from splitee.images import decode_fit, open_source
from splitee.machine import machine_description
from splitee.models import load_checkpoint
from splitee.models.torch_edge import TorchEdgeModel
from splitee.onnx_edge import OnnxEdgeModel
from splitee.onnx_manifest import MANIFEST, read_manifest

REPO = Path(__file__).resolve().parent.parent
BATCHES = (1, 16)
MODELS = {
    "r56": ("resnet56-multiexit.safetensors", "cifar10-sample.zip", "32x32"),
    "lite0": ("efficientnet-lite0-caltech101.safetensors", "caltech101-sample.zip", "224x224"),
}
CALIBRATION_FRAMES = 128


def frames_of(sample: Path, real_size: bool, size: int, n: int) -> np.ndarray:
    if not real_size:
        return load_source(sample, "test", cache_dir=None).images[:n]
    out = []
    for _, data, _ in open_source(sample, "test").iter_bytes():
        out.append(decode_fit(data, size))
        if len(out) == n:
            break
    return np.stack(out)


def exported(checkpoint: Path, out: Path, arm: int, calibration: np.ndarray) -> Path:
    """fp32 and int8 graphs of ``arm`` (a partial export: the benchmark runs one arm)."""
    from splitee.onnx_export import export

    if not (out / MANIFEST).is_file():
        export(checkpoint, out, calibration=calibration, arms=[arm])
    return out


def timed(fn, reps: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def cell(times: list[float], batch: int) -> dict:
    t = np.asarray(times)
    return {
        "frames_per_s": round(batch * len(t) / t.sum(), 1),
        "ms_per_frame": round(1000 * float(t.mean()) / batch, 3),
        "ms_per_batch_p50": round(1000 * float(np.median(t)), 3),
    }


def bench_model(key: str, args, root: Path) -> list[dict]:
    ckpt_name, sample_name, label = MODELS[key]
    ckpt = REPO / "assets" / ckpt_name
    model = load_checkpoint(ckpt, fuse=True)
    arm = model.num_exits - 1 if args.arm is None else args.arm - 1
    frames = frames_of(REPO / "assets" / sample_name, model.real_size, model.input_size, 128)
    out = exported(ckpt, root / f"{key}-arm{arm + 1}", arm, frames[:CALIBRATION_FRAMES])
    m = read_manifest(out)
    runtimes = {
        "torch": TorchEdgeModel(model),
        "ort_fp32": OnnxEdgeModel(m, threads=args.threads),
        "ort_int8": OnnxEdgeModel(m, threads=args.threads, int8=True),
    }
    rows = []
    for b in BATCHES:
        x = np.ascontiguousarray(np.resize(frames, (b, *frames.shape[1:])))
        arms = np.full(b, arm)
        row: dict = {"model": model.arch, "frames": label, "arm": arm + 1, "batch": b}
        reps = args.reps
        with torch.inference_mode():
            for name, rt in runtimes.items():
                fn = lambda rt=rt, x=x, arms=arms: rt.run_frames(x, arms, True)  # noqa: E731
                row[name] = cell(timed(fn, reps, 2), b)
        base = row["torch"]["frames_per_s"]
        for name in ("ort_fp32", "ort_int8"):
            row[f"{name}_vs_torch"] = round(row[name]["frames_per_s"] / base, 2)
        row["reps"] = reps
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30, help="timed batches per cell")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--arm", type=int, default=None, help="1-based arm (default: the final)")
    ap.add_argument("--export-dir", type=Path, default=None)
    ap.add_argument("--models", default="r56,lite0")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.export_dir or Path(tmp)
        results = [r for key in args.models.split(",") for r in bench_model(key, args, root)]
    print(
        json.dumps(
            {
                "bench": "edge_runtime",
                "machine": machine_description(),
                "threads": args.threads,
                "note": "what the edge step calls per batch; every frame at one arm, side "
                "observations on; int8 calibrated on the benchmark's own sample",
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
