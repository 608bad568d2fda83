"""Faust plumbing shared by edge and cloud workers: the app, and a batch agent.

Delivery (at-least-once): a batch's events are acknowledged only after every record the batch
produced (results, offloads, dead letters) has been acknowledged by the broker (``acks=all``),
and after the batch's policy delta is applied; faust commits only acknowledged offsets. If any
step fails unexpectedly the process exits at once without acknowledging, so the batch is
consumed again by whichever worker owns the partition next. Downstream, results are
deduplicated by frame id (:mod:`splitee.results`).

Model compute runs in a single worker thread (``run_in_executor``), so the event loop keeps
serving Kafka heartbeats and fetches while a batch computes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import faust

from splitee import metrics
from splitee.kafka_io import dlq_headers
from splitee.settings import Settings

log = logging.getLogger("splitee.worker")


class BatchProcessor(Protocol):
    def process(self, records: list[Any]) -> Any: ...

    def apply(self, out: Any) -> None: ...


def build_app(app_id: str, s: Settings) -> faust.App:
    """A faust app with the project's size limits, memory tables and no web server."""
    datadir = s.var_dir / "faust" / app_id
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        app_id,
        broker=f"kafka://{s.kafka.bootstrap}",
        store="memory://",
        web_enabled=False,
        datadir=str(datadir),
        producer_max_request_size=s.kafka.max_message_bytes,
        consumer_max_fetch_size=s.kafka.max_message_bytes,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        topic_disable_leader=True,
        topic_partitions=s.kafka.partitions,
    )


def raw_topic(app: faust.App, name: str) -> faust.TopicT:
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


def attach_batch_agent(
    app: faust.App,
    source: str,
    processor: BatchProcessor,
    results_topic: str,
    dlq_topic: str,
    batch_size: int,
    wait_s: float,
    offload_topic: str | None = None,
    concurrency: int = 1,
) -> None:
    """Consume ``source`` in batches and publish what ``processor`` returns."""
    from edge_workers.processor import InRecord

    src = raw_topic(app, source)
    results = raw_topic(app, results_topic)
    dlq = raw_topic(app, dlq_topic)
    offload = raw_topic(app, offload_topic) if offload_topic else None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compute")

    @app.agent(src, name=f"{app.conf.id}-step", concurrency=concurrency)
    async def step(stream: faust.StreamT) -> None:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(batch_size, within=wait_s):
            try:
                recs = [
                    InRecord(
                        e.message.key,
                        e.message.value,
                        list((e.message.headers or {}).items())
                        if isinstance(e.message.headers, dict)
                        else list(e.message.headers or []),
                        e.message.topic,
                        e.message.partition,
                        e.message.offset,
                    )
                    for e in events
                ]
                out = await loop.run_in_executor(pool, processor.process, recs)
                t_produce = time.perf_counter()
                futs = []
                for r in out.results:
                    futs.append(await results.send(key=r.key, value=r.value, headers=r.headers))
                if offload is not None:
                    for r in out.offloads:
                        futs.append(await offload.send(key=r.key, value=r.value, headers=r.headers))
                for d in out.dead:
                    rec = d.record
                    h = dlq_headers(
                        d.reason, d.detail, rec.topic, rec.partition, rec.offset, rec.headers
                    )
                    futs.append(await dlq.send(key=rec.key, value=rec.value or b"", headers=h))
                await asyncio.gather(*futs)
                metrics.STAGE.labels("produce").observe(time.perf_counter() - t_produce)
                await loop.run_in_executor(pool, processor.apply, out)
            except Exception:  # fail-stop: never acknowledge a batch we did not finish
                log.exception("batch failed; exiting without acknowledging it")
                logging.shutdown()
                os._exit(70)


def run_worker(app: faust.App, loglevel: str = "WARNING") -> None:
    """Run the faust worker in the foreground until SIGTERM/SIGINT."""
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
