"""Benchmark: the whole pipeline on real Kafka and Redis, on this machine. One JSON line.

Per policy (the learned I-SplitEE, and fixed arms 1 and 5 to pin the split):

1. **edge throughput**: a backlog of frames waits in Kafka; one edge worker (no cloud worker)
   drains it; throughput = frames after the first batch / time from the first batch's output to
   the last one (from the results' ``done_ts`` and offloads' ``edge_ts``);
2. **bare prefix**: in this process, with the same torch thread count and batch size, the
   batched ``prefix`` + exit head for the arms the worker chose, weighted by how often it chose
   them — the compute alone; ``edge_vs_bare_prefix`` = (1) / (2); and the edge worker's batch
   step alone, in this process without Kafka (``edge_step_vs_bare_prefix``), to tell the
   worker's own overhead from the cost of Kafka I/O;
3. **end to end**: then a cloud worker starts, a paced 2-camera stream runs through everything,
   and frames per second and p50/p99 capture-to-result latency are measured.

Usage: .venv/bin/python bench/pipeline.py [--frames 2000] [--policies isplitee,fixed:1,fixed:5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from kafka import TopicPartition

from producers.camera import Frame
from splitee.data import decode_jpeg, iter_zip_frames
from splitee.kafka_io import consumer
from splitee.machine import machine_description
from splitee.models import load_checkpoint
from splitee.models.inputs import to_input
from splitee.results import collect_results
from splitee.testing import Pipeline
from splitee.wire import header_map

REPO = Path(__file__).resolve().parent.parent

LIVE_FPS = 100.0  # per camera, in the end-to-end phase


def send(p: Pipeline, frames: list[Frame], per_camera: int, fps: float, run: str) -> list:
    return p.stream(frames, per_camera, fps, run)


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


def bare_prefix_fps(model, arms: Counter, batch: int, threads: int, images: np.ndarray) -> float:
    torch.set_num_threads(threads)
    x = to_input(images[:batch])
    total = sum(arms.values())
    per_frame = 0.0
    with torch.inference_mode():
        for arm, n in arms.items():
            for _ in range(2):
                model.exit_logits(model.prefix(x, arm), arm)  # warm up
            reps = 10
            t0 = time.perf_counter()
            for _ in range(reps):
                model.exit_logits(model.prefix(x, arm), arm)
            per_frame += (n / total) * (time.perf_counter() - t0) / (reps * batch)
    return 1.0 / per_frame


def edge_step_fps(model, policy: str, sent: list, batch: int, threads: int) -> float:
    """The edge worker's batch step alone (decode, policy, early exit, encode), without Kafka."""
    from edge_workers.processor import EdgeProcessor
    from policy_store import CostModel, MemoryStore
    from policy_store.policies import make_policy
    from splitee.records import InRecord

    torch.set_num_threads(threads)
    cm = CostModel(model.exit_depths)
    step = EdgeProcessor(model, cm, make_policy(policy), MemoryStore(cm.num_arms))
    recs = [
        InRecord(f.meta.camera_id.encode(), f.jpeg, f.meta.headers(), "frames", 0, i)
        for i, f in enumerate(sent)
    ]
    batches = [recs[i : i + batch] for i in range(0, len(recs) - batch + 1, batch)]
    for b in batches[:2]:
        step.apply(step.process(b))  # warm up (and let the policy settle a little)
    t0 = time.perf_counter()
    for b in batches:
        step.apply(step.process(b))
    return len(batches) * batch / (time.perf_counter() - t0)


def run_policy(policy: str, frames: list[Frame], n: int, log_dir: Path, model) -> dict:
    p = Pipeline.create(log_dir, SPLITEE_POLICY__NAME=policy)
    s = p.settings
    run = f"bench-{policy.replace(':', '')}-{int(time.time())}"
    try:
        sent = send(p, frames, n // 2, fps=0.0, run=run)  # the backlog
        p.start("edge", "edge-1")
        ids = {f.meta.frame_id for f in sent}
        # wait until every frame left the edge (a result at the edge, or an offload record)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = collect_results(s.kafka, None, 30, run)
            offl = offload_edge_times(p, run)
            if len(done.results) + len(offl) >= len(ids):
                break
            time.sleep(2)
        edge_times = sorted([r.done_ts for r in done.results.values()] + [t for t, _ in offl])
        arms = Counter([r.arm for r in done.results.values()] + [a for _, a in offl])
        b = s.edge.batch_size
        edge_fps = (len(edge_times) - b) / (edge_times[-1] - edge_times[b - 1])
        images = np.stack([decode_jpeg(f.jpeg) for f in sent[:b]])
        bare = bare_prefix_fps(model, arms, b, s.edge.threads, images)
        step = edge_step_fps(model, policy, sent, b, s.edge.threads)

        # End to end: cloud worker on, then a paced stream through everything.
        p.start("cloud", "cloud-1")
        p.wait_ready(edge=1, cloud=1)
        collect_results(s.kafka, ids, 600, run)  # drain the backlog's offloads first
        run2 = run + "-live"
        t0 = time.time()
        sent2 = send(p, frames, n // 4, fps=LIVE_FPS, run=run2)
        ids2 = {f.meta.frame_id for f in sent2}
        view = collect_results(s.kafka, ids2, 600, run2)
        t1 = max(r.done_ts for r in view.results.values())
        lat = np.array([r.done_ts - r.capture_ts for r in view.results.values()])
        return {
            "policy": policy,
            "edge_frames_per_s": round(edge_fps, 1),
            "bare_prefix_frames_per_s": round(bare, 1),
            "edge_vs_bare_prefix": round(edge_fps / bare, 3),
            "edge_step_without_kafka_frames_per_s": round(step, 1),
            "edge_step_vs_bare_prefix": round(step / bare, 3),
            "arms_chosen": {str(a + 1): c for a, c in sorted(arms.items())},
            "e2e_frames": len(view.results),
            "e2e_missing": len(ids2 - set(view.results)),
            "e2e_frames_per_s": round(len(view.results) / (t1 - t0), 1),
            "offered_frames_per_s": 2 * LIVE_FPS,  # two cameras
            "latency_p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
            "latency_p99_ms": round(float(np.percentile(lat, 99)) * 1000, 1),
        }
    finally:
        p.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--policies", default="isplitee,fixed:1,fixed:5")
    args = ap.parse_args()
    status = subprocess.run(
        ["bash", str(REPO / "deploy" / "servers-status.sh")], capture_output=True, check=False
    )
    subprocess.run(["bash", str(REPO / "deploy" / "servers-up.sh")], check=True)
    frames = [
        Frame(b, y, i)
        for i, (_, b, y) in enumerate(iter_zip_frames(REPO / "assets" / "cifar10-sample.zip"))
    ]
    # the workers' model: BatchNorm folded into the convolutions
    model = load_checkpoint(REPO / "assets" / "resnet56-multiexit.safetensors", fuse=True)
    out = []
    with tempfile.TemporaryDirectory() as d:
        for pol in args.policies.split(","):
            out.append(run_policy(pol, frames, args.frames, Path(d), model))
    if status.returncode != 0:  # we started the servers: stop them again
        subprocess.run(["bash", str(REPO / "deploy" / "servers-down.sh")], check=False)
    print(
        json.dumps(
            {
                "bench": "pipeline",
                "machine": machine_description(),
                "batch_size": 32,
                "results": out,
            }
        )
    )


if __name__ == "__main__":
    main()
