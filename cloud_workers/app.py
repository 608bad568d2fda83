"""The cloud worker process: offload topic → suffix (CUDA when present) → results topic."""

from __future__ import annotations

import torch

from cloud_workers.processor import CloudProcessor
from policy_store.keys import PolicyKeys
from splitee import metrics, policy_setup
from splitee.context import CONTEXTS
from splitee.models import load_checkpoint
from splitee.models.backbones import register_from_settings
from splitee.models.checkpoint import resolve_device
from splitee.settings import Settings
from splitee.worker.runtime import Role, run_batch_worker


def build_processor(s: Settings) -> CloudProcessor:
    device = resolve_device(s.model.device)
    if device.type == "cpu":
        torch.set_num_threads(s.cloud.threads)
    register_from_settings(s)  # a user's backbone comes from these settings, not the models'
    model = load_checkpoint(s.model.checkpoint, fuse=True)
    model, cm = policy_setup.model_and_costs(s, model)
    store = policy_setup.store(s, cm.num_arms)
    metrics.watch_store(store)
    return CloudProcessor(
        model,
        cm,
        store,
        policy=policy_setup.policy(s),
        device=device,
        max_bytes=s.kafka.max_message_bytes,
        channel=s.channel.mode if s.channel.enabled else None,
        channel_bits=s.channel.bits,
        alpha_grid=s.policy.alpha_grid,
        channel_cost=s.channel.enabled and s.channel.offload_cost == "channel",
        policy_keys=PolicyKeys(s.policy.key, s.policy.scope, CONTEXTS),
    )


def main(s: Settings, worker_id: str, metrics_port: int = 0) -> None:
    c = s.cloud
    role = Role("cloud", s.kafka.offload_topic, c.batch_size, c.max_queue_delay_ms / 1000)
    run_batch_worker(s, role, build_processor(s), worker_id, metrics_port)
