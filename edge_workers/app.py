"""The edge worker process: frames topic → batched early exit → results / offload topics."""

from __future__ import annotations

from edge_workers.processor import EdgeProcessor
from splitee import policy_setup
from splitee.onnx_manifest import ManifestError
from splitee.settings import Settings
from splitee.worker.runtime import Role, refuse_to_start, run_batch_worker


def build_processor(s: Settings, worker_id: str) -> EdgeProcessor:
    """The edge step on the configured runtime: torch (the checkpoint), or the exported graphs
    on ONNX Runtime, which imports no torch (the ``edge`` install extra has none)."""
    if s.edge.runtime == "onnxruntime":
        model, bandit, latent = policy_setup.onnx_edge_model_and_bandit(s)
    else:
        import torch

        torch.set_num_threads(s.edge.threads)
        model, bandit, latent = policy_setup.worker_model_and_bandit(s)
    p = s.policy
    measured = p.offload_cost_mode == "latency" and p.uplink_rate == "measured"
    return EdgeProcessor(
        model,
        bandit,
        codec=s.edge.codec,
        worker_id=worker_id,
        max_frame_bytes=s.edge.max_frame_bytes,
        max_aspect=s.edge.max_aspect,
        capture_ts_tolerance_s=s.edge.capture_ts_tolerance_s,
        td=policy_setup.transmission_decision(s),
        latent=latent,
        frame_quality=s.edge.frame_quality,
        board=bandit.store if measured else None,  # the cloud's measured uplink rate
    )


def main(
    s: Settings, worker_id: str, metrics_port: int = 0, fail_on_frame: str | None = None
) -> None:
    e, k = s.edge, s.kafka
    role = Role(
        "edge",
        k.frames_topic,
        e.batch_size,
        e.max_queue_delay_ms / 1000,
        k.offload_topic,
        e.concurrency,
    )
    try:
        step = build_processor(s, worker_id)
    except (policy_setup.PolicyConflict, policy_setup.CostSetupError, ManifestError) as exc:
        refuse_to_start(str(exc))
    run_batch_worker(s, role, step, worker_id, metrics_port, fail_on_frame)
