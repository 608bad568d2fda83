"""The edge worker process: frames topic → batched early exit → results / offload topics."""

from __future__ import annotations

import torch

from edge_workers.processor import EdgeProcessor
from splitee import metrics, policy_setup
from splitee.faust_app import attach_batch_agent, build_app, run_worker
from splitee.kafka_io import dlq
from splitee.models import load_checkpoint
from splitee.settings import Settings


def build_processor(s: Settings, worker_id: str) -> EdgeProcessor:
    torch.set_num_threads(s.edge.threads)
    model = load_checkpoint(s.model.checkpoint, fuse=True)
    p = s.policy
    cm = policy_setup.cost_model(s, model.exit_depths)
    return EdgeProcessor(
        model,
        cm,
        policy_setup.policy(s),
        policy_setup.store(s, cm.num_arms),
        policy_key=p.key,
        codec=s.edge.codec,
        worker_id=worker_id,
        max_frame_bytes=s.edge.max_frame_bytes,
        policy_scope=p.scope,
        alpha_grid=p.alpha_grid,
        td=build_td(s),
    )


def build_td(s: Settings):
    """The edge's transmission decision (None: the C ≥ α rule) from the channel settings."""
    from splitee import td

    c = s.channel
    if not c.enabled or c.td == "alpha":
        return None
    if c.td == "learned":
        if c.td_file is None:
            raise ValueError("channel.td = learned needs channel.td_file (td-learned.json)")
        return td.Learned.load(c.td_file)
    return td.Always() if c.td == "always" else td.Never()


def main(s: Settings, worker_id: str, metrics_port: int = 0) -> None:
    processor = build_processor(s, worker_id)
    app = build_app(f"{s.kafka.group_prefix}-edge", s)
    k = s.kafka
    attach_batch_agent(
        app,
        k.frames_topic,
        processor,
        k.results_topic,
        dlq(k.frames_topic, k),
        s.edge.batch_size,
        s.edge.batch_wait_ms / 1000.0,
        offload_topic=k.offload_topic,
        concurrency=s.edge.concurrency,
    )
    metrics.serve(metrics_port)
    metrics.register_target(s.var_dir, "edge", worker_id, metrics_port)
    run_worker(app, s.log_level)
