"""Prometheus metrics of every role, named after Prometheus conventions.

A process is one worker; ``role`` and ``worker`` reach Prometheus as target labels from file
service discovery (see :func:`register_target`), so the series here carry only the labels that
vary inside a process: camera, arm, policy, reason, stage. No label takes unbounded values.
"""

from __future__ import annotations

import atexit
import contextlib
import json
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

FRAMES_IN = Counter("splitee_frames_in_total", "Records consumed", ["role"])
FRAMES_OUT = Counter(
    "splitee_frames_out_total", "Results produced, by where the frame finished", ["role", "where"]
)
EXITS = Counter("splitee_exits_total", "Frames that exited at the edge, by arm", ["arm"])
OFFLOADS = Counter("splitee_offloads_total", "Frames offloaded to the cloud, by arm", ["arm"])
ARM_CHOSEN = Counter(
    "splitee_arm_chosen_total", "Split arm chosen per frame", ["camera", "arm", "policy"]
)
CURRENT_ARM = Gauge("splitee_current_arm", "Last split arm chosen for a camera", ["camera"])
REWARD = Histogram(
    "splitee_reward",
    "Rewards applied to the policy, per arm (side observations included)",
    ["arm"],
    buckets=(-3, -2, -1.5, -1, -0.75, -0.5, -0.25, 0, 0.25, 0.5, 0.75, 1),
)
COST = Counter("splitee_cost_total", "Sum of per-frame costs (λ_k + o if offloaded)", ["role"])
OFFLOAD_BYTES = Counter("splitee_offload_bytes_total", "Encoded offload bytes", ["codec"])
STAGE = Histogram(
    "splitee_stage_seconds", "Time per batch in each stage", ["stage"], buckets=LATENCY_BUCKETS
)
END_TO_END = Histogram(
    "splitee_end_to_end_seconds",
    "Capture to result, per frame",
    ["where"],
    buckets=LATENCY_BUCKETS,
)
BATCH = Histogram(
    "splitee_batch_size", "Records per processed batch", ["role"], buckets=BATCH_BUCKETS
)
TD_DECISIONS = Counter(
    "splitee_td_decisions_total",
    "Channel-aware transmission decisions at the edge, by camera and SNR band",
    ["camera", "snr_band", "decision"],
)
DEAD_LETTERS = Counter("splitee_dead_letters_total", "Records sent to a DLQ", ["role", "reason"])
FRAMES_SENT = Counter(
    "splitee_frames_sent_total",
    "Frames a camera sent to Kafka, by the distortion phase in force",
    ["camera", "distortion"],
)


def serve(port: int) -> None:
    """Expose /metrics on 127.0.0.1:port (0 = disabled)."""
    if port:
        start_http_server(port, addr="127.0.0.1")


def targets_dir(var_dir: Path) -> Path:
    """Where Prometheus' file_sd finds targets under the runtime state dir (settings.var_dir)."""
    return var_dir / "prometheus" / "targets"


def register_target(var_dir: Path, role: str, worker: str, port: int) -> Path | None:
    """Write a file_sd target so Prometheus scrapes this process (removed on clean exit)."""
    if not port:
        return None
    d = targets_dir(var_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{worker}.json"
    entry = [{"targets": [f"127.0.0.1:{port}"], "labels": {"role": role, "worker": worker}}]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry))
    tmp.replace(path)
    atexit.register(unregister_target, path, port)
    return path


def unregister_target(path: Path, port: int) -> None:
    """Remove this process's file_sd target, unless another process has taken the name since."""
    with contextlib.suppress(OSError, ValueError):
        if f"127.0.0.1:{port}" in json.loads(path.read_text())[0]["targets"]:
            path.unlink()
