"""Benchmark: the whole pipeline on real Kafka and Redis, on this machine. One JSON line.

Per policy (the learned I-SplitEE, and fixed arms 1 and 5 to pin the split), with one edge and
one cloud worker (started from ``--code``, this checkout by default, so two checkouts compare
side by side on the same servers in one run):

1. **backlog**: both workers join their groups and are paused (SIGSTOP); a backlog of frames
   is sent; the edge resumes and drains it, then the cloud drains the offloads.
   ``edge_frames_per_s`` and ``cloud_frames_per_s`` come from the output timestamps (first batch
   excluded); each worker's **CPU per frame** is read from ``/proc`` around its drain.
2. **bare compute**, in this process with the same torch thread count and batch size: the
   batched ``prefix`` + exit head for the arms the edge chose (weighted by how often), and the
   ``suffix`` for the offloaded arms. ``edge_vs_bare_prefix`` = (1) / (2), and
   ``edge_overhead_us_per_frame`` / ``cloud_overhead_us_per_frame`` = worker CPU per frame
   minus model compute per frame: what the pipeline itself costs.
3. **latency at half capacity**: paced 2-camera streams at rising offered rates find the highest
   rate the pipeline sustains (results within 5 % of offered, p99 under 1 s); a stream at half
   that rate gives capture-to-result p50/p99.

``--runtime torch,onnxruntime`` runs every policy once per edge runtime on the same servers in
one run: with ``onnxruntime`` the edge worker runs the graphs of ``splitee export`` (exported
here into a temporary folder, or ``--onnx-dir``) and its bare reference is the same edge graphs
on ONNX Runtime in this process (``bare_runtime`` says which; ``bare_torch_prefix_frames_per_s``
keeps torch's for comparison).

``--model`` takes any checkpoint the workers take: the real-size EfficientNet-Lite0
(``assets/efficientnet-lite0-caltech101.safetensors``) streams the Caltech-101 sample's JPEGs at
their own resolution, decoded and fitted to 224×224 by the edge exactly as the bare reference
here fits them (``--images`` picks another zip of JPEGs).

Usage: .venv/bin/python bench/pipeline.py [--frames 2000] [--policies isplitee,fixed:1,fixed:5]
       [--code DIR] [--rates 50,100,200,400] [--model CHECKPOINT] [--images ZIP]
       [--runtime torch|onnxruntime|torch,onnxruntime] [--onnx-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from kafka import TopicPartition

from producers.camera import Frame
from splitee.data import iter_zip_frames
from splitee.images import decode_fit, open_source
from splitee.jpeg import decode_jpeg
from splitee.kafka_io import consumer
from splitee.machine import machine_description
from splitee.models import load_checkpoint
from splitee.models.inputs import to_input
from splitee.results import collect_results
from splitee.testing import REPO, Pipeline
from splitee.wire import header_map

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def offload_edge_times(p: Pipeline, run: str) -> list[tuple[float, int]]:
    """(edge_ts, arm) of every offload record of this run."""
    k = p.settings.kafka
    c = consumer(k, group_id=None)
    parts = c.partitions_for_topic(k.offload_topic) or set()
    tps = [TopicPartition(k.offload_topic, i) for i in parts]
    c.assign(tps)
    c.seek_to_beginning()
    ends = c.end_offsets(tps)
    out = []
    while any(c.position(tp) < ends[tp] for tp in tps):
        for recs in c.poll(timeout_ms=500).values():
            for r in recs:
                h = header_map(r.headers)
                if h.get("run_id", b"").decode() == run:
                    out.append((float(h["edge_ts"]), int(h["arm"])))
    c.close()
    return out


def timed(fn, reps: int = 10) -> float:
    for _ in range(2):
        fn()  # warm up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def bare_seconds_per_frame(model, arms: Counter, batch: int, images: np.ndarray) -> float:
    """Edge compute per frame: prefix + exit head, weighted by the arms chosen."""
    x = to_input(images[:batch])
    total = sum(arms.values())
    with torch.inference_mode():
        return sum(
            (n / total) * timed(lambda a=arm: model.exit_logits(model.prefix(x, a), a)) / batch
            for arm, n in arms.items()
        )


def bare_onnx_seconds_per_frame(onnx, arms: Counter, batch: int, images: np.ndarray) -> float:
    """Edge compute per frame on ONNX Runtime: each chosen arm's edge graph (prefix and the
    exits up to the arm, as the worker runs it), weighted by the arms chosen."""
    total = sum(arms.values())
    x = np.ascontiguousarray(images[:batch])
    return sum(
        (n / total) * timed(lambda a=arm: onnx.run_frames(x, np.full(len(x), a), True)) / batch
        for arm, n in arms.items()
    )


def suffix_seconds_per_frame(model, arms: Counter, batch: int, images: np.ndarray) -> float:
    """Cloud compute per frame: the suffix from each offloaded arm, weighted."""
    x = to_input(images[:batch])
    total = sum(arms.values()) or 1
    out = 0.0
    with torch.inference_mode():
        for arm, n in arms.items():
            h = model.prefix(x, arm).half().float()  # what arrives: float16 features
            out += (n / total) * timed(lambda a=arm, h=h: model.suffix(h, a)) / batch
    return out


def rate(times: list[float], skip: int) -> float:
    times = sorted(times)
    return (len(times) - skip) / max(times[-1] - times[skip - 1], 1e-9)


def wait_until(cond, timeout: float = 600, every: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark phase did not finish")
        time.sleep(every)


def decode_like_the_edge(model, jpeg: bytes) -> np.ndarray:
    """The frame as the edge worker feeds it to the model (fitted to a real-size input)."""
    return decode_fit(jpeg, model.input_size) if model.real_size else decode_jpeg(jpeg)


def backlog_phase(p: Pipeline, frames: list[Frame], n: int, model, threads: int, onnx=None) -> dict:
    s = p.settings
    b = s.edge.batch_size
    edge, cloud = p.procs["edge-1"].pid, p.procs["cloud-1"].pid
    run = f"backlog-{int(time.time() * 1000)}"
    for pid in (edge, cloud):
        os.kill(pid, signal.SIGSTOP)
    sent = p.stream(frames, n // 2, 0.0, run)
    ids = {f.meta.frame_id for f in sent}
    e0, c0 = cpu_seconds(edge), cpu_seconds(cloud)
    os.kill(edge, signal.SIGCONT)
    box: dict = {}

    def edge_done() -> bool:
        box["done"] = collect_results(s.kafka, None, 20, run)
        box["offl"] = offload_edge_times(p, run)
        return len(box["done"].results) + len(box["offl"]) >= len(ids)

    wait_until(edge_done, every=2.0)
    e1 = cpu_seconds(edge)
    os.kill(cloud, signal.SIGCONT)
    view = collect_results(s.kafka, ids, 600, run)
    c1 = cpu_seconds(cloud)
    edge_times = [r.done_ts for r in box["done"].results.values()] + [t for t, _ in box["offl"]]
    cloud_times = [r.done_ts for r in view.results.values() if r.where == "cloud"]
    arms = Counter([r.arm for r in box["done"].results.values()] + [a for _, a in box["offl"]])
    off_arms = Counter(a for _, a in box["offl"])
    images = np.stack([decode_like_the_edge(model, f.jpeg) for f in sent[:b]])
    torch.set_num_threads(threads)
    bare_torch = bare_seconds_per_frame(model, arms, b, images)
    bare = bare_torch if onnx is None else bare_onnx_seconds_per_frame(onnx, arms, b, images)
    suffix = suffix_seconds_per_frame(model, off_arms, s.cloud.batch_size, images.repeat(2, 0))
    edge_cpu = (e1 - e0) / len(ids)
    cloud_cpu = (c1 - c0) / max(len(cloud_times), 1)
    edge_fps = rate(edge_times, b)
    return {
        "edge_frames_per_s": round(edge_fps, 1),
        "bare_prefix_frames_per_s": round(1 / bare, 1),
        "bare_runtime": "torch" if onnx is None else "onnxruntime",
        "bare_torch_prefix_frames_per_s": round(1 / bare_torch, 1),
        "edge_vs_bare_prefix": round(edge_fps * bare, 3),
        "cloud_frames_per_s": round(rate(cloud_times, min(b, len(cloud_times) - 1)), 1)
        if len(cloud_times) > b
        else None,
        "edge_overhead_us_per_frame": round((edge_cpu - bare) * 1e6, 1),
        "cloud_overhead_us_per_frame": round((cloud_cpu - suffix) * 1e6, 1)
        if cloud_times
        else None,
        "edge_cpu_us_per_frame": round(edge_cpu * 1e6, 1),
        "edge_compute_us_per_frame": round(bare * 1e6, 1),
        "cloud_cpu_us_per_frame": round(cloud_cpu * 1e6, 1),
        "cloud_compute_us_per_frame": round(suffix * 1e6, 1),
        "arms_chosen": {str(a + 1): c for a, c in sorted(arms.items())},
        "backlog_missing": len(ids - set(view.results)),
    }


def paced(p: Pipeline, frames: list[Frame], fps_per_camera: float, seconds: float) -> dict:
    run = f"paced-{int(fps_per_camera)}-{int(time.time() * 1000)}"
    n = max(20, int(fps_per_camera * seconds))
    sent = p.stream(frames, n, fps_per_camera, run)
    ids = {f.meta.frame_id for f in sent}
    view = collect_results(p.settings.kafka, ids, 300, run)
    done = [r.done_ts for r in view.results.values()]
    first = min(r.capture_ts for r in view.results.values())
    lat = np.array([r.done_ts - r.capture_ts for r in view.results.values()])
    return {
        "offered": 2 * fps_per_camera,
        # results over the span from the first capture to the last result
        "achieved": round(len(done) / max(max(done) - first, 1e-9), 1),
        "missing": len(ids - set(view.results)),
        "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
        "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 1),
    }


def half_capacity(p: Pipeline, frames: list[Frame], rates: list[float], seconds: float) -> dict:
    sweep = []
    best = 0.0
    for r in rates:
        m = paced(p, frames, r / 2, seconds)
        sweep.append(m)
        if m["missing"] or m["achieved"] < 0.95 * m["offered"] or m["p99_ms"] > 1000:
            break
        best = m["offered"]
    half = paced(p, frames, max(best, rates[0]) / 4, seconds) if best else None
    return {
        "capacity_frames_per_s": best,
        "latency_p50_ms": half["p50_ms"] if half else None,
        "latency_p99_ms": half["p99_ms"] if half else None,
        "sweep": sweep,
    }


def run_policy(
    policy: str, frames, args, log_dir: Path, model, runtime: str, onnx_dir: Path | None
) -> dict:
    env = {}
    onnx = None
    if runtime == "onnxruntime":
        from splitee.onnx_edge import OnnxEdgeModel
        from splitee.onnx_manifest import read_manifest

        env = {"SPLITEE_EDGE__RUNTIME": runtime, "SPLITEE_EDGE__ONNX_DIR": str(onnx_dir)}
        onnx = OnnxEdgeModel(read_manifest(onnx_dir), threads=1)
    p = Pipeline.create(
        log_dir, SPLITEE_POLICY__NAME=policy, SPLITEE_MODEL__CHECKPOINT=str(args.model), **env
    )
    p.code = args.code
    try:
        p.start("edge", "edge-1")
        p.start("cloud", "cloud-1")
        p.wait_ready(edge=1, cloud=1)
        out = {
            "runtime": runtime,
            "policy": policy,
            **backlog_phase(p, frames, args.frames, model, 1, onnx),
        }
        rates = [float(r) for r in args.rates.split(",")]
        out["half_capacity"] = half_capacity(p, frames, rates, args.seconds)
        return out
    finally:
        p.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--policies", default="isplitee,fixed:1,fixed:5")
    ap.add_argument("--code", type=Path, default=REPO, help="checkout the workers run")
    ap.add_argument("--rates", default=None, help="offered frames/s to try (default by model)")
    ap.add_argument(
        "--model", type=Path, default=REPO / "assets" / "resnet56-multiexit.safetensors"
    )
    ap.add_argument("--images", type=Path, default=None, help="zip of JPEGs (default by model)")
    ap.add_argument("--seconds", type=float, default=6.0, help="length of each paced stream")
    ap.add_argument(
        "--runtime", default="torch", help="edge runtimes, comma-separated: torch, onnxruntime"
    )
    ap.add_argument("--onnx-dir", type=Path, default=None, help="an export of --model to reuse")
    args = ap.parse_args()
    runtimes = args.runtime.split(",")
    if not set(runtimes) <= {"torch", "onnxruntime"}:
        ap.error(f"--runtime: torch or onnxruntime, not {args.runtime}")
    status = subprocess.run(
        ["bash", str(REPO / "deploy" / "servers-status.sh")], capture_output=True, check=False
    )
    subprocess.run(["bash", str(REPO / "deploy" / "servers-up.sh")], check=True)
    # the workers' model: BatchNorm folded into the convolutions
    model = load_checkpoint(args.model, fuse=True)
    real_size = model.real_size
    sample = "caltech101-sample.zip" if real_size else "cifar10-sample.zip"
    images = args.images or REPO / "assets" / sample
    if args.rates is None:  # a real-size frame costs ~20× the compute of a 32×32 one
        args.rates = "5,10,20,40,80" if real_size else "50,100,200,400,800"
    if real_size:  # any image zip or folder of class sub-folders, sent byte for byte
        src = open_source(images, "test")
        frames = [Frame(b, y, i) for i, (_, b, y) in enumerate(src.iter_bytes())]
    else:
        frames = [Frame(b, y, i) for i, (_, b, y) in enumerate(iter_zip_frames(images))]
    out = []
    with tempfile.TemporaryDirectory() as d:
        onnx_dir = args.onnx_dir
        if "onnxruntime" in runtimes and onnx_dir is None:
            from splitee.onnx_export import export

            onnx_dir = Path(d) / "onnx"
            export(args.model, onnx_dir)
        for runtime in runtimes:
            for pol in args.policies.split(","):
                out.append(run_policy(pol, frames, args, Path(d), model, runtime, onnx_dir))
    if status.returncode != 0:  # we started the servers: stop them again
        subprocess.run(["bash", str(REPO / "deploy" / "servers-down.sh")], check=False)
    print(
        json.dumps(
            {
                "bench": "pipeline",
                "machine": machine_description(),
                "code": str(args.code),
                "model": args.model.name,
                "runtimes": runtimes,
                "images": images.name,
                "batch_size": 32,
                "results": out,
            }
        )
    )


if __name__ == "__main__":
    main()
