"""A simulated camera: frames from a dataset, a frame rate, a distortion schedule → Kafka.

Each frame is JPEG bytes keyed by the camera id on the ``frames`` topic, with headers
``frame_id``, ``camera_id``, ``capture_ts``, ``schema`` (and ``run_id``). Pristine frames are
sent byte for byte as stored; distorted ones are decoded, distorted (seeded by camera and frame
number, so a rerun sends identical bytes) and re-encoded. The ground-truth label goes to the
``truth`` topic keyed by frame id; only evaluation reads it. A frame counts as sent once the
broker acknowledged it; one the producer gives up on is sent again (:meth:`Camera.run`), so
none is lost silently (see :func:`camera_producer` for when a resend may duplicate one).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from producers.schedule import Schedule
from splitee import kafka_io, metrics
from splitee.images import decode_any
from splitee.jpeg import encode_jpeg
from splitee.settings import KafkaSettings
from splitee.wire import FrameMeta

log = logging.getLogger("splitee.camera")

if TYPE_CHECKING:
    from splitee.link import SNRProcess


@dataclass(frozen=True)
class Frame:
    jpeg: bytes
    label: int
    index: int


@dataclass(kw_only=True)
class SentFrame:
    meta: FrameMeta
    label: int
    distortion: str
    index: int
    jpeg: bytes


class Camera:
    """Produces one camera's stream; :meth:`frames` is pure, :meth:`run` sends to Kafka.

    Built by keyword (nine settings, several of one type); a deployment's cameras come from its
    settings through :func:`producers.fleet.build_cameras`."""

    def __init__(
        self,
        *,
        camera_id: str,
        source: list[Frame],
        schedule: Schedule,
        fps: float = 25.0,
        order: str = "random",
        seed: int = 0,
        jpeg_quality: int = 90,
        run_id: str = "",
        channel: SNRProcess | None = None,
    ) -> None:
        """``channel`` (splitee.link) stamps each frame's ``snr_db`` header, per sequence
        number, for the simulated link between this camera's edge and the cloud."""
        if not source:
            raise ValueError(f"camera {camera_id}: empty frame source")
        self.camera_id = camera_id
        self.source = source
        self.schedule = schedule
        self.fps = fps
        self.order = order
        self.seed = seed
        self.jpeg_quality = jpeg_quality
        self.run_id = run_id
        self.channel = channel
        self.token = run_id or f"{int(time.time() * 1000):x}"

    def _indices(self) -> Iterator[int]:
        rng = np.random.default_rng(self.seed)
        while True:
            if self.order == "random":
                yield from (int(i) for i in rng.permutation(len(self.source)))
            else:
                yield from range(len(self.source))

    def frames(self, count: int, clock: Callable[[], float] = time.time) -> Iterator[SentFrame]:
        """The stream's frames (count = 0: endless), timestamped by ``clock`` when made."""
        start = clock()
        for seq, idx in enumerate(self._indices()):
            if count and seq >= count:
                return
            now = clock()
            dist = self.schedule.at(seq, now - start)
            frame = self.source[idx]
            if dist.kind == "pristine":
                jpeg = frame.jpeg
            else:
                img = dist.apply(decode_any(frame.jpeg), seed=self.seed * 1_000_003 + seq)
                jpeg = encode_jpeg(img, self.jpeg_quality)
            meta = FrameMeta(
                f"{self.camera_id}:{self.token}:{seq:08d}",
                self.camera_id,
                now,
                run_id=self.run_id,
                snr_db=None if self.channel is None else round(self.channel.snr_db(seq), 3),
            )
            yield SentFrame(
                meta=meta, label=frame.label, distortion=str(dist), index=idx, jpeg=jpeg
            )

    def run(
        self,
        producer: Producers,
        frames_topic: str,
        truth_topic: str,
        count: int,
        on_sent: Callable[[SentFrame], None] | None = None,
        stop: threading.Event | None = None,
        max_pending: int = 2000,
        retry_s: float = 1.0,
        drain_s: float = 10.0,
    ) -> Delivery:
        """Send ``count`` frames at ``fps`` (0 = as fast as possible); returns what was delivered.

        A frame counts as delivered, and ``on_sent`` sees it (from this camera's thread), once
        the broker acknowledged both its frame and its truth record. A record the producer
        gives up on (e.g. ``KafkaTimeoutError`` when the broker stays away longer than its
        ``delivery_timeout_ms``) is kept and sent again every ``retry_s`` until acknowledged;
        so is one the producer never answers for (:class:`Producers`). At most
        ``max_pending`` frames wait for acknowledgement: when full the camera *blocks* (it
        captures nothing until the broker is back) rather than dropping frames. A frame is
        dropped — counted, with a WARNING — only when the producer refuses it for good (a
        non-retriable error such as a record above the size limit), or when ``stop`` is set and
        it is still unacknowledged ``drain_s`` later. Frames sent again may reach the topic
        after frames captured later (per-camera order holds only without outages).
        """
        interval = 1.0 / self.fps if self.fps > 0 else 0.0
        box = _Outbox(self.camera_id, producer, max_pending, retry_s, self._delivered(on_sent))
        next_t = time.monotonic()
        for f in self.frames(count):
            if stop is not None and stop.is_set():
                break
            truth = {
                "label": f.label,
                "camera_id": self.camera_id,
                "distortion": f.distortion,
                "index": f.index,
                "jpeg_bytes": len(f.jpeg),
                "run_id": self.run_id,
            }
            records = (
                (frames_topic, self.camera_id.encode(), f.jpeg, f.meta.headers()),
                (truth_topic, f.meta.frame_id.encode(), json.dumps(truth).encode(), []),
            )
            box.submit(f, records, stop)
            if interval:
                next_t += interval
                box.pump(next_t - time.monotonic())
            else:
                box.pump(0.0)
        box.finish(stop, drain_s)
        return box.stats

    def _delivered(
        self, on_sent: Callable[[SentFrame], None] | None
    ) -> Callable[[SentFrame], None]:
        def delivered(f: SentFrame) -> None:
            metrics.FRAMES_SENT.labels(self.camera_id, f.distortion).inc()
            if on_sent:
                on_sent(f)

        return delivered


class Producers:
    """The cameras' shared producer, replaced when it stops answering.

    kafka-python (2.3) may stop sending for good once it expires a batch that was in flight:
    it resets its producer id and drops the batches drained in the same loop, whose futures
    then never resolve, and leaves their partitions muted. So a record without an answer well
    after ``delivery_timeout_ms + request_timeout_ms`` (``stall_s``) means a stuck producer:
    with a ``factory`` the cameras build a new one (:meth:`renew`) and send their unanswered
    records again through it; a producer passed in without a factory can only be reported.
    """

    def __init__(
        self,
        producer: KafkaProducer | None = None,
        factory: Callable[[], KafkaProducer] | None = None,
    ) -> None:
        if (producer is None) == (factory is None):
            raise ValueError("give a producer or a factory of producers")
        self.factory = factory
        self.current = producer if producer is not None else factory()  # type: ignore[misc]
        self.generation = 0
        cfg = self.current.config
        self.stall_s = (cfg["delivery_timeout_ms"] + cfg["request_timeout_ms"]) / 1000 + 5.0
        self._lock = threading.Lock()

    def renew(self, generation: int) -> bool:
        """Replace the producer of ``generation`` (once, whichever camera asks first); False
        when there is no factory."""
        if self.factory is None:
            return False
        with self._lock:
            if generation != self.generation:
                return True
            old, self.current = self.current, self.factory()
            self.generation += 1
        log.warning("the Kafka producer stopped answering; replaced it")
        # close() cannot finish a stuck producer: its flush waits for the batches it lost, and
        # raises. The old producer is left to its (daemon) I/O thread; the cameras send what
        # it held again through the new one.
        with contextlib.suppress(KafkaError):
            old.close(timeout=0)
        return True

    def close(self, timeout_s: float) -> None:
        """Close the producer this object built (one passed in is the caller's to close)."""
        if self.factory is None:
            return
        try:
            self.current.close(timeout=timeout_s)
        except KafkaError as exc:  # records still unacknowledged (counted as dropped)
            log.warning("closing the cameras' Kafka producer: %r", exc)


@dataclass
class Delivery:
    """One camera's frames: acknowledged, needing at least one resend, given up."""

    delivered: int = 0
    retried: int = 0
    dropped: int = 0


@dataclass
class _Pending:
    frame: SentFrame
    records: tuple[tuple[str, bytes, bytes, list[tuple[str, bytes]]], ...]
    waiting: set[int]
    retried: bool = False


class _Outbox:
    """One camera's frames between ``send`` and the broker's acknowledgement.

    The producer's callbacks run on its I/O thread; they only enqueue events, and everything
    else happens on the camera's thread in :meth:`pump`. ``sent`` maps each record awaiting an
    answer to when and through which producer generation it was sent; an answer for anything
    else (a record already given up on, sent again since) is stale and ignored.
    """

    #: retry rounds in a row without any acknowledgement before the producer is replaced
    RENEW_AFTER_ROUNDS = 3

    def __init__(
        self,
        camera_id: str,
        producers: Producers,
        max_pending: int,
        retry_s: float,
        on_delivered: Callable[[SentFrame], None],
    ) -> None:
        self.camera_id = camera_id
        self.producers = producers
        self.max_pending = max_pending
        self.retry_s = retry_s
        self.on_delivered = on_delivered
        self.events: queue.SimpleQueue[tuple[int, int, int, BaseException | None]] = (
            queue.SimpleQueue()
        )
        self.pending: dict[int, _Pending] = {}
        self.sent: dict[tuple[int, int], tuple[float, int]] = {}
        self.retry: deque[tuple[int, int]] = deque()
        self.retry_at = 0.0
        self.stall_check_at = 0.0
        self.failed_rounds = 0  # retry rounds since the last acknowledgement
        self.seq = 0
        self.stats = Delivery()

    def submit(self, frame: SentFrame, records: tuple, stop: threading.Event | None) -> None:
        """Send a frame's records; first wait (handling acknowledgements) while the box is full."""
        while len(self.pending) >= self.max_pending and not (stop and stop.is_set()):
            self.pump(0.1)
        self.seq += 1
        self.pending[self.seq] = _Pending(frame, records, set(range(len(records))))
        for part in range(len(records)):
            self._send(self.seq, part)

    def _send(self, seq: int, part: int) -> None:
        topic, key, value, headers = self.pending[seq].records[part]
        gen, prod = self.producers.generation, self.producers.current
        try:
            fut = prod.send(topic, key=key, value=value, headers=headers)
        except KafkaError as exc:  # no metadata / buffer full within max_block_ms, too large
            self._failed(seq, part, exc, exc.retriable)
            return
        self.sent[(seq, part)] = (time.monotonic(), gen)
        fut.add_callback(lambda _md: self.events.put((seq, part, gen, None)))
        fut.add_errback(lambda exc: self.events.put((seq, part, gen, exc)))

    def pump(self, timeout_s: float) -> None:
        """Handle acknowledgements and failures for ``timeout_s``; resend what is due."""
        deadline = time.monotonic() + timeout_s
        while True:
            now = time.monotonic()
            if now >= self.stall_check_at:
                self.stall_check_at = now + 1.0
                self._check_stall(now)
            if self.retry and now >= self.retry_at:
                todo, self.retry = self.retry, deque()
                for seq, part in todo:
                    if seq in self.pending:
                        self._send(seq, part)
            wait = min(deadline, self.stall_check_at) - time.monotonic()
            if self.retry:
                wait = min(wait, self.retry_at - time.monotonic())
            try:
                event = self.events.get(timeout=wait) if wait > 0 else self.events.get_nowait()
            except queue.Empty:
                if time.monotonic() >= deadline:
                    return
                continue
            self._handle(*event)

    def _handle(self, seq: int, part: int, gen: int, exc: BaseException | None) -> None:
        if self.sent.get((seq, part), (0.0, -1))[1] != gen:
            return  # stale: given up on or sent again since
        del self.sent[(seq, part)]
        if exc is not None:
            # what a replaced producer fails (closed forcefully) is sent again in any case
            retriable = getattr(exc, "retriable", False) or gen != self.producers.generation
            self._failed(seq, part, exc, retriable)
            return
        self.failed_rounds = 0
        p = self.pending[seq]
        p.waiting.discard(part)
        if not p.waiting:
            del self.pending[seq]
            self.stats.delivered += 1
            self.on_delivered(p.frame)

    def _check_stall(self, now: float) -> None:
        """Records unanswered for ``stall_s``: a stuck producer (see :class:`Producers`)."""
        stalled = [key for key, (t, _) in self.sent.items() if now - t > self.producers.stall_s]
        if not stalled:
            return
        gen = self.sent[stalled[0]][1]
        if not self._renew(gen):
            log.error(
                "camera %s: %d records unanswered for %.0f s; the producer seems stuck",
                self.camera_id,
                len(stalled),
                self.producers.stall_s,
            )

    def _renew(self, gen: int) -> bool:
        """Replace the producer of ``gen``; what it still holds is sent again through the new
        one. False when there is no factory to build one."""
        if not self.producers.renew(gen):
            return False
        self.failed_rounds = 0
        for key in [k for k, (_, g) in self.sent.items() if g < self.producers.generation]:
            del self.sent[key]
            self._failed(*key, KafkaTimeoutError("no answer from a stuck producer"), True)
        return True

    def _failed(self, seq: int, part: int, exc: BaseException, retriable: bool) -> None:
        p = self.pending.get(seq)
        if p is None:  # its other record was refused for good
            return
        if not retriable:
            del self.pending[seq]
            self.stats.dropped += 1
            log.warning(
                "camera %s: frame %s dropped, the producer refused it for good: %r",
                self.camera_id,
                p.frame.meta.frame_id,
                exc,
            )
            return
        if not self.retry:
            self.retry_at = time.monotonic() + self.retry_s
            # kafka-python can also keep expiring every batch for a partition after an outage
            # (its idempotent sequence state for it is broken): rounds that keep failing
            # without any acknowledgement in between replace the producer too
            self.failed_rounds += 1
            if self.failed_rounds > self.RENEW_AFTER_ROUNDS:
                self._renew(self.producers.generation)
            log.warning(
                "camera %s: records not acknowledged (%r); %d frames pending, retrying",
                self.camera_id,
                exc,
                len(self.pending),
            )
        self.retry.append((seq, part))
        if not p.retried:
            p.retried = True
            self.stats.retried += 1

    def finish(self, stop: threading.Event | None, drain_s: float) -> None:
        """Wait until every frame is acknowledged; once ``stop`` is set, ``drain_s`` at most."""
        deadline = None
        while self.pending:
            if stop is not None and stop.is_set():
                deadline = deadline or time.monotonic() + drain_s
                if time.monotonic() >= deadline:
                    break
            self.pump(0.2)
        if self.pending:
            self.stats.dropped += len(self.pending)
            log.warning(
                "camera %s: stopped with %d frames unacknowledged; counted as dropped",
                self.camera_id,
                len(self.pending),
            )
            self.pending.clear()


def camera_producer(k: KafkaSettings, **overrides: object) -> KafkaProducer:
    """The cameras' producer (:func:`splitee.kafka_io.producer`: idempotent, ``acks=all``),
    made to ride out broker outages.

    It reconnects within a second once the broker is back (kafka-python backs off up to 30 s
    by default) and retries without limit for ``delivery_timeout_ms`` = 5 minutes, so an
    outage shorter than that costs no duplicate: the broker recognises the idempotent
    producer's retries. A longer outage makes the producer give records up; the camera then
    sends them again (:meth:`Camera.run`), which is at-least-once: a batch the broker wrote
    just as it went away may be written twice, because kafka-python takes a new producer id
    when it expires a batch that was in flight, so the broker cannot recognise the resend.
    Readers deduplicate by frame id. ``overrides`` are KafkaProducer options.
    """
    cfg: dict[str, object] = {
        "reconnect_backoff_max_ms": 1000,
        "delivery_timeout_ms": 300_000,
        "retries": float("inf"),
    }
    return kafka_io.producer(k, **{**cfg, **overrides})


def run_cameras(
    cameras: list[Camera],
    producer: KafkaProducer | Callable[[], KafkaProducer],
    frames_topic: str,
    truth_topic: str,
    count: int,
    on_sent: Callable[[SentFrame], None] | None = None,
    stop: threading.Event | None = None,
    **delivery: float,
) -> dict[str, dict[str, int]]:
    """Run cameras side by side, one thread each, sharing one (thread-safe) producer.

    ``producer``: a KafkaProducer (the caller closes it), or better a factory of them, such as
    ``lambda: camera_producer(k)``, so that a stuck producer can be replaced (see
    :class:`Producers`); this function then closes the last one it built.
    Returns per camera the frames ``delivered`` (also as ``sent``), ``retried`` and
    ``dropped`` (see :meth:`Camera.run`, which ``delivery`` options go to); ``on_sent`` sees
    every delivered frame (from the cameras' threads), ``stop`` ends every stream early.
    """
    if isinstance(producer, KafkaProducer):
        producers = Producers(producer)
    else:
        producers = Producers(factory=producer)
    got: dict[str, Delivery] = {}

    def one(cam: Camera) -> None:
        got[cam.camera_id] = cam.run(
            producers, frames_topic, truth_topic, count, on_sent=on_sent, stop=stop, **delivery
        )

    threads = [threading.Thread(target=one, args=(c,), name=c.camera_id) for c in cameras]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    producers.close(timeout_s=10)
    out = {
        key: {cam: getattr(d, key) for cam, d in got.items()}
        for key in ("delivered", "retried", "dropped")
    }
    return {"sent": dict(out["delivered"]), **out}
