"""The cloud worker process: offload topic → suffix (CUDA when present) → results topic."""

from __future__ import annotations

import torch

from cloud_workers.processor import CloudProcessor
from splitee import metrics, policy_setup
from splitee.faust_app import attach_batch_agent, build_app, run_worker
from splitee.kafka_io import dlq
from splitee.models import load_checkpoint
from splitee.models.checkpoint import resolve_device
from splitee.settings import Settings


def build_processor(s: Settings) -> CloudProcessor:
    device = resolve_device(s.model.device)
    if device.type == "cpu":
        torch.set_num_threads(s.cloud.threads)
    model = load_checkpoint(s.model.checkpoint, fuse=True)
    p = s.policy
    cm = policy_setup.cost_model(s, model.exit_depths)
    return CloudProcessor(
        model,
        cm,
        policy_setup.store(s, cm.num_arms),
        policy=policy_setup.policy(s),
        device=device,
        max_bytes=s.kafka.max_message_bytes,
        channel=s.channel.mode if s.channel.enabled else None,
        channel_bits=s.channel.bits,
        alpha_grid=p.alpha_grid,
        channel_cost=s.channel.enabled and s.channel.offload_cost == "channel",
    )


def main(s: Settings, worker_id: str, metrics_port: int = 0) -> None:
    processor = build_processor(s)
    app = build_app(f"{s.kafka.group_prefix}-cloud", s)
    k = s.kafka
    attach_batch_agent(
        app,
        k.offload_topic,
        processor,
        k.results_topic,
        dlq(k.offload_topic, k),
        s.cloud.batch_size,
        s.cloud.batch_wait_ms / 1000.0,
    )
    metrics.serve(metrics_port)
    metrics.register_target(s.var_dir, "cloud", worker_id, metrics_port)
    run_worker(app, s.log_level)
