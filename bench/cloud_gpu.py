"""Benchmark: the cloud's suffix per batch — eager, torch.compile'd and CUDA-graph-captured.

For the ResNet-56 checkpoint, split arm 1 (the arm offloads mostly come from) and batch sizes
1, 8, 32 and 64: milliseconds per batch of

* ``eager``: the suffix as the CPU path runs it (float32; on CUDA bf16 + channels-last),
* ``compiled``: ``torch.compile`` of the same (inductor; on CUDA without CUDA graphs),
* ``graphs``: :class:`cloud_workers.suffix_runner.SuffixRunner` — one captured CUDA graph per
  (arm, padded batch size), replayed (CUDA only).

Prints one JSON line with the device named; on a machine without CUDA it times eager and
compiled on the CPU and says that the graph path was not run.

Usage: .venv/bin/python bench/cloud_gpu.py [--arm 1] [--reps 50] [--no-compile]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from cloud_workers.suffix_runner import SuffixRunner
from splitee.machine import machine_description
from splitee.models import load_checkpoint

REPO = Path(__file__).resolve().parent.parent
BATCHES = (1, 8, 32, 64)


def per_batch_ms(fn, x: torch.Tensor, reps: int, cuda: bool) -> float:
    for _ in range(5):
        fn(x)  # warm up (and compile, or capture)
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn(x)
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arm", type=int, default=1, help="1-based split arm")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    k = args.arm - 1
    model = load_checkpoint(REPO / "assets" / "resnet56-multiexit.safetensors", fuse=True)
    runner = SuffixRunner(model.to(device), device, graphs=True)
    dtype = torch.bfloat16 if cuda else torch.float32
    shape = model.feature_shape(k)
    compiled = None
    if not args.no_compile:
        opts = {"mode": "max-autotune-no-cudagraphs"} if cuda else {}
        compiled = torch.compile(lambda h: runner.model.suffix(h, k), **opts)
    rows = []
    with torch.inference_mode():
        for b in BATCHES:
            x = torch.randn((b, *shape), device=device, dtype=dtype)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            row = {
                "batch": b,
                "eager_ms": round(
                    per_batch_ms(lambda h: model.suffix(h, k), x, args.reps, cuda), 3
                ),
            }
            if compiled is not None:
                row["compiled_ms"] = round(per_batch_ms(compiled, x, args.reps, cuda), 3)
            if cuda:
                row["graphs_ms"] = round(
                    per_batch_ms(lambda h: runner(h, k), x, args.reps, cuda), 3
                )
                row["eager_vs_graphs"] = round(row["eager_ms"] / row["graphs_ms"], 2)
            rows.append(row)
    print(
        json.dumps(
            {
                "bench": "cloud_gpu",
                "machine": machine_description(),
                "device": torch.cuda.get_device_name(0) if cuda else "cpu",
                "arm": args.arm,
                "note": None
                if cuda
                else "no CUDA device here: eager and compiled on the CPU; "
                "the CUDA-graph path was not run",
                "results": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
