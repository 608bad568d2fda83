"""The edge worker process: frames topic → batched early exit → results / offload topics."""

from __future__ import annotations

import torch

from edge_workers.processor import EdgeProcessor
from splitee import metrics, policy_setup
from splitee.models import load_checkpoint
from splitee.models.backbones import register_from_settings
from splitee.settings import Settings
from splitee.worker.runtime import Role, run_batch_worker


def build_processor(s: Settings, worker_id: str) -> EdgeProcessor:
    torch.set_num_threads(s.edge.threads)
    register_from_settings(s)  # a user's backbone comes from these settings, not the models'
    model = load_checkpoint(s.model.checkpoint, fuse=True)
    model, cm = policy_setup.model_and_costs(s, model)
    store = policy_setup.store(s, cm.num_arms)
    metrics.watch_store(store)
    return EdgeProcessor(
        model,
        cm,
        policy_setup.policy(s),
        store,
        policy_key=s.policy.key,
        codec=s.edge.codec,
        worker_id=worker_id,
        max_frame_bytes=s.edge.max_frame_bytes,
        policy_scope=s.policy.scope,
        alpha_grid=s.policy.alpha_grid,
        td=policy_setup.transmission_decision(s),
    )


def main(s: Settings, worker_id: str, metrics_port: int = 0) -> None:
    e, k = s.edge, s.kafka
    role = Role(
        "edge",
        k.frames_topic,
        e.batch_size,
        e.max_queue_delay_ms / 1000,
        k.offload_topic,
        e.concurrency,
    )
    run_batch_worker(s, role, build_processor(s, worker_id), worker_id, metrics_port)
