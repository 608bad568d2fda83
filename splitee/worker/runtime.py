"""The worker runtime every role plugs into: faust app, batch agent, signals, metrics.

A role (edge, cloud) provides a batch step — ``process(list[InRecord]) -> StepOutput`` and
``apply(StepOutput)`` for the policy deltas — and :func:`run_batch_worker` does the rest:
builds the faust app with the project's size limits, consumes the source topic in batches,
publishes results, offloads and dead letters, serves ``/metrics`` and registers the process with
Prometheus, and runs until SIGTERM/SIGINT (faust's worker handles both).

Delivery (at-least-once): a batch's events are acknowledged only after every record the batch
produced has been acknowledged by the broker (``acks=all``), and after the batch's policy delta
is applied; faust commits only acknowledged offsets. Bad input never stops a worker: a record
the step rejects is a dead letter, and a record that still makes the step raise is isolated —
the batch is retried record by record, and the culprit goes to the dead-letter topic with
reason ``processing_error`` while the rest are processed. Only a failure to publish or to apply
(an internal fault) exits the process without acknowledging, so the batch is consumed again by
whichever worker owns the partition next; the deploy supervisor restarts the process.
Downstream, results are deduplicated by frame id (:mod:`splitee.results`).

Model compute runs in a single worker thread (``run_in_executor``), so the event loop keeps
serving Kafka heartbeats and fetches while a batch computes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Protocol

from splitee import metrics
from splitee.kafka_io import dlq, dlq_record, faust_credentials
from splitee.logs import configure_logging
from splitee.settings import Settings
from splitee.worker import kafka_internals, kafka_records
from splitee.worker.fault_injection import with_faults
from splitee.worker.publish import BatchPublisher
from splitee.worker.records import DeadLetter, InRecord, OutRecord, StepOutput
from splitee.worker.stall import Progress, start_watchdog

if TYPE_CHECKING:  # faust is imported where a worker is built: plain services stay light
    import faust

log = logging.getLogger("splitee.worker")


class BatchStep(Protocol):
    """What a role plugs into the runtime."""

    def process(self, records: list[InRecord]) -> StepOutput: ...

    def apply(self, out: StepOutput) -> None: ...


@dataclass(frozen=True)
class Role:
    """Where a role reads from and writes to, and how it batches."""

    name: str  # "edge" or "cloud": consumer group suffix and metrics role label
    source: str
    batch_size: int
    wait_s: float
    offload_topic: str | None = None
    concurrency: int = 1


def stop_event(*signals: signal.Signals) -> threading.Event:
    """An event set by SIGTERM/SIGINT (or ``signals``), for plain (non-faust) services: the
    current step finishes and ``finally`` blocks and atexit handlers run before it leaves."""
    ev = threading.Event()
    for sig in signals or (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: ev.set())
    return ev


@contextmanager
def stop_on_signals(*signals: signal.Signals) -> Iterator[threading.Event]:
    """:func:`stop_event` for a bounded job inside a longer process (a foreground command):
    the previous handlers come back when the block ends."""
    signals = signals or (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.getsignal(sig) for sig in signals}
    try:
        yield stop_event(*signals)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_metrics(
    var_dir: Path, role: str, worker_id: str, port: int, host: str = "127.0.0.1"
) -> None:
    """Serve ``/metrics`` on ``host:port`` (0: none; settings.deploy.metrics_host) and register
    the file_sd target under ``var_dir`` (settings.var_dir), removed again at a clean exit."""
    metrics.serve(port, host)
    metrics.register_target(var_dir, role, worker_id, port, host)


def build_app(app_id: str, s: Settings) -> faust.App:
    """A faust app with the project's size limits, connection security (TLS, SASL/SCRAM), memory
    tables and no web server."""
    import faust

    datadir = s.var_dir / "faust" / app_id
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        app_id,
        broker=f"kafka://{s.kafka.bootstrap}",
        broker_credentials=faust_credentials(s.kafka),
        store="memory://",
        web_enabled=False,
        datadir=str(datadir),
        producer_max_request_size=s.kafka.max_message_bytes,
        # one produce batch per partition holds a whole batch of offloads (32 KB each at arm 1)
        # instead of one record per 16 KB default batch
        producer_max_batch_size=min(1 << 20, s.kafka.max_message_bytes),
        consumer_max_fetch_size=s.kafka.max_message_bytes,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # a killed worker's partitions move on within seconds, not faust's default minute
        broker_session_timeout=s.kafka.session_timeout_s,
        broker_heartbeat_interval=s.kafka.heartbeat_interval_s,
        consumer_metadata_max_age_ms=int(s.kafka.metadata_max_age_s * 1000),
        producer_metadata_max_age_ms=int(s.kafka.metadata_max_age_s * 1000),
        topic_disable_leader=True,
        topic_partitions=s.kafka.partitions,
    )


def raw_topic(app: faust.App, name: str) -> faust.TopicT:
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


def in_record(event: faust.EventT) -> InRecord:
    msg = event.message
    headers = msg.headers or []
    items = list(headers.items()) if isinstance(headers, dict) else list(headers)
    return InRecord(
        msg.key,
        msg.value,
        items,
        msg.topic,
        msg.partition,
        msg.offset,
        msg.timestamp or None,
        getattr(msg, "timestamp_type", 0) == 1,  # 1: LogAppendTime (aiokafka's TimestampType)
    )


def process_isolated(step: BatchStep, role: str, records: list[InRecord]) -> StepOutput:
    """``step.process(records)``; if it raises, each record alone, the culprits dead letters."""
    try:
        return step.process(records)
    except Exception as exc:
        if len(records) == 1:
            log.exception("record failed; sent to the dead-letter topic")
            metrics.DEAD_LETTERS.labels(role, "processing_error").inc()
            return StepOutput(dead=[DeadLetter(records[0], "processing_error", repr(exc))])
    out = StepOutput()
    for rec in records:
        out.extend(process_isolated(step, role, [rec]))
    return out


async def take_available(
    stream: faust.StreamT, max_: int, max_delay_s: float
) -> AsyncIterator[list[faust.EventT]]:
    """Batches of what is available now, up to ``max_`` events — dynamic batching.

    faust's ``take_events`` waits until its buffer is full or its timer fires, and stops
    buffering while a batch is being processed, so a trickle of frames waits the whole timer
    for every batch. Here events keep arriving into the buffer while the caller processes a
    batch, and the next batch is whatever is buffered by then (up to ``max_``; the buffer holds
    at most ``max_`` more, so memory stays bounded): at low load a frame is taken at once, under
    load batches grow by themselves. ``max_delay_s`` only bounds each wait while nothing is
    buffered. The caller acknowledges each batch (:func:`ack_batch`) once its outputs are
    delivered, which may be after it has taken the next batch.
    """
    events: list[faust.EventT] = []
    ready = asyncio.Event()  # something is buffered
    room = asyncio.Event()  # the buffer has room again
    room.set()

    async def add(value: object) -> object:
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_available found no current event")
        while len(events) >= 2 * max_:  # one batch in hand, one buffered: wait for room
            room.clear()
            await stream.wait(room)
        events.append(event)
        ready.set()
        return value

    acks = stream.enable_acks
    stream.enable_acks = False  # acknowledged here, after the batch is processed
    stream.add_processor(add)
    kafka_internals.start_passive(stream)
    try:
        while not stream.should_stop:
            if not events:
                ready.clear()
                await stream.wait_for_stopped(ready, timeout=max_delay_s)
                continue
            batch = events[:max_]
            del events[:max_]
            room.set()
            yield batch
    finally:
        stream.enable_acks = acks
        kafka_internals.remove_processor(stream, add)


async def ack_batch(stream: faust.StreamT, events: list[faust.EventT]) -> None:
    """Acknowledge a batch's events: their offsets may be committed from now on."""
    for event in events:
        await stream.ack(event)


#: sysexits.h's EX_CONFIG: a configuration fault that a restart cannot fix; deploy/lib.sh's
#: supervisor does not restart a process that exits with it.
EX_CONFIG = 78


def refuse_to_start(reason: str) -> NoReturn:
    """Stop before consuming anything, with one line that says what to change."""
    log.error(reason)
    logging.shutdown()
    sys.exit(EX_CONFIG)


def fail_stop(what: str) -> None:
    """An internal fault: log it and exit without acknowledging (the supervisor restarts us
    and the unacknowledged frames are consumed again)."""
    log.exception("%s; exiting without acknowledging the batch", what)
    logging.shutdown()
    os._exit(70)


def attach_batch_agent(
    app: faust.App, role: Role, step: BatchStep, s: Settings, progress: Progress | None = None
) -> None:
    """Consume ``role.source`` in batches and publish what ``step`` returns.

    Two batches are in flight: while batch n's outputs wait for the broker's acknowledgement
    (and then its policy update runs), batch n + 1 already computes. Delivery semantics are
    unchanged: a batch's input is acknowledged only after every one of its outputs is
    acknowledged by the broker and its update is applied, in the order batches were taken; a
    failed delivery stops the worker without acknowledging. ``progress`` counts the batches
    taken and held (the stall watchdog reads it).
    """
    progress = progress if progress is not None else Progress()
    k = s.kafka
    src = raw_topic(app, role.source)
    dead_topic = dlq(role.source, k)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compute")
    publisher = BatchPublisher(app)

    async def deliver(out: StepOutput) -> list[asyncio.Future]:
        """Queue every output of a batch; the futures of their acknowledgements."""
        futs = await publisher.send(k.results_topic, out.results)
        if role.offload_topic:
            futs += await publisher.send(role.offload_topic, out.offloads)
        dead = []
        for d in out.dead:  # the dead letter fits the size limit, cut if need be
            r = d.record
            key, value, h = dlq_record(
                d.reason, d.detail, r.topic, r.partition, r.offset, r.key, r.value,
                r.headers, k.max_message_bytes,
            )  # fmt: skip
            dead.append(OutRecord(key, value, h))
        return futs + await publisher.send(dead_topic, dead)

    async def finish(
        stream: faust.StreamT,
        events: list[faust.EventT],
        out: StepOutput,
        futs: list[asyncio.Future],
        started: float,
        before: asyncio.Future | None,
    ) -> None:
        """Wait for a batch's delivery, apply its update, then acknowledge its input."""
        try:
            await asyncio.gather(*futs)
            metrics.STAGE.labels("produce").observe(time.perf_counter() - started)
            await asyncio.get_running_loop().run_in_executor(pool, step.apply, out)
            if before is not None:
                await before  # acknowledge in the order the batches were taken
            await ack_batch(stream, events)
            progress.finished()
        except Exception:
            fail_stop("batch delivery failed")

    @app.agent(src, name=f"{app.conf.id}-step", concurrency=role.concurrency)
    async def batches(stream: faust.StreamT) -> None:
        loop = asyncio.get_running_loop()
        last: asyncio.Future | None = None
        async for events in take_available(stream, role.batch_size, role.wait_s):
            progress.took()
            recs = [in_record(e) for e in events]
            out = await loop.run_in_executor(pool, process_isolated, step, role.name, recs)
            try:
                started = time.perf_counter()
                futs = await deliver(out)
            except Exception:
                fail_stop("batch delivery failed")
            previous = last
            last = asyncio.ensure_future(finish(stream, events, out, futs, started, previous))
            if previous is not None:
                await previous  # at most two batches in flight
        if last is not None:
            await last


def run_batch_worker(
    s: Settings,
    role: Role,
    step: BatchStep,
    worker_id: str,
    metrics_port: int = 0,
    fail_on_frame: str | None = None,
) -> None:
    """Run ``step`` as a ``role`` worker in the foreground until SIGTERM/SIGINT.

    ``fail_on_frame`` (tests only, :mod:`splitee.worker.fault_injection`): frames whose id
    starts with it make the step raise, so a live worker's isolation of a raising record can be
    tested."""
    import faust

    class Worker(faust.Worker):
        """faust's worker without its terminal spinner, which sets the root logger to DEBUG
        (every aiokafka debug line then builds a log record: ~3 % of the event loop's time),
        and with the project's structured logs at ``log_level``."""

        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            self.spinner = None
            configure_logging(s.log_level, s.log_levels)

    kafka_records.install()  # a record with a non-UTF-8 header key is a dead letter, no crash
    group = f"{s.kafka.group_prefix}-{role.name}"  # faust's consumer group is its app id
    app = build_app(group, s)
    progress = Progress()
    attach_batch_agent(app, role, with_faults(step, fail_on_frame), s, progress)
    start_watchdog(s.kafka, group, role.source, progress, s.kafka.stall_restart_s)
    serve_metrics(s.var_dir, role.name, worker_id, metrics_port, s.deploy.metrics_host)
    worker = Worker(app, loglevel=s.log_level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
