"""The cloud worker process: offload topic → suffix (CUDA when present) → results topic."""

from __future__ import annotations

import torch

from cloud_workers.processor import CloudProcessor
from policy_store.uplink import UplinkEstimator
from splitee import policy_setup
from splitee.models.checkpoint import resolve_device
from splitee.settings import Settings
from splitee.worker.runtime import Role, refuse_to_start, run_batch_worker


def build_processor(s: Settings) -> CloudProcessor:
    device = resolve_device(s.model.device)
    if device.type == "cpu":
        torch.set_num_threads(s.cloud.threads)
    model, bandit, latent = policy_setup.worker_model_and_bandit(s)
    p = s.policy
    uplink = None
    if p.offload_cost_mode == "latency" and p.uplink_rate == "measured":
        uplink = UplinkEstimator(p.uplink_mbps * 1e6, p.uplink_halflife)
    return CloudProcessor(
        model,
        bandit,
        device=device,
        max_bytes=s.kafka.max_message_bytes,
        channel=s.channel.mode if s.channel.enabled else None,
        channel_bits=s.channel.bits,
        channel_cost=s.channel.enabled and s.channel.offload_cost == "channel",
        latent=latent,
        uplink=uplink,
        board=bandit.store if uplink is not None else None,  # shares the rate with the edge
    )


def main(
    s: Settings, worker_id: str, metrics_port: int = 0, fail_on_frame: str | None = None
) -> None:
    c = s.cloud
    role = Role("cloud", s.kafka.offload_topic, c.batch_size, c.max_queue_delay_ms / 1000)
    try:
        step = build_processor(s)
    except (policy_setup.PolicyConflict, policy_setup.CostSetupError) as exc:
        refuse_to_start(str(exc))
    run_batch_worker(s, role, step, worker_id, metrics_port, fail_on_frame)
