"""A simulated camera: frames from a dataset, a frame rate, a distortion schedule → Kafka.

Each frame is JPEG bytes keyed by the camera id on the ``frames`` topic, with headers
``frame_id``, ``camera_id``, ``capture_ts``, ``schema`` (and ``run_id``). Pristine frames are
sent byte for byte as stored; distorted ones are decoded, distorted (seeded by camera and frame
number, so a rerun sends identical bytes) and re-encoded. The ground-truth label goes to the
``truth`` topic keyed by frame id; only evaluation reads it. The producer is idempotent with
``acks=all``: a retried send never duplicates and an acknowledged frame is never lost.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from producers.schedule import Schedule
from splitee import metrics
from splitee.data import decode_jpeg, encode_jpeg
from splitee.wire import FrameMeta

if TYPE_CHECKING:
    from splitee.channel import SNRProcess


@dataclass(frozen=True)
class Frame:
    jpeg: bytes
    label: int
    index: int


@dataclass
class SentFrame:
    meta: FrameMeta
    label: int
    distortion: str
    index: int
    jpeg: bytes


class Camera:
    """Produces one camera's stream; :meth:`frames` is pure, :meth:`run` sends to Kafka."""

    def __init__(
        self,
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
        """``channel`` (splitee.channel) stamps each frame's ``snr_db`` header, per sequence
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
                img = dist.apply(decode_jpeg(frame.jpeg), seed=self.seed * 1_000_003 + seq)
                jpeg = encode_jpeg(img, self.jpeg_quality)
            meta = FrameMeta(
                f"{self.camera_id}:{self.token}:{seq:08d}",
                self.camera_id,
                now,
                run_id=self.run_id,
                snr_db=None if self.channel is None else round(self.channel.snr_db(seq), 3),
            )
            yield SentFrame(meta, frame.label, str(dist), idx, jpeg)

    def run(
        self,
        producer,
        frames_topic: str,
        truth_topic: str,
        count: int,
        on_sent: Callable[[SentFrame], None] | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Send ``count`` frames at ``fps`` (0 = as fast as possible); returns frames sent.

        ``stop``, when set, ends the stream early (a clean SIGTERM of ``splitee produce``).
        """
        interval = 1.0 / self.fps if self.fps > 0 else 0.0
        next_t = time.monotonic()
        sent = 0
        for f in self.frames(count):
            if stop is not None and stop.is_set():
                break
            producer.send(
                frames_topic, key=self.camera_id.encode(), value=f.jpeg, headers=f.meta.headers()
            )
            truth = {
                "label": f.label,
                "camera_id": self.camera_id,
                "distortion": f.distortion,
                "index": f.index,
                "run_id": self.run_id,
            }
            producer.send(
                truth_topic, key=f.meta.frame_id.encode(), value=json.dumps(truth).encode()
            )
            sent += 1
            metrics.FRAMES_SENT.labels(self.camera_id, f.distortion).inc()
            if on_sent:
                on_sent(f)
            if interval:
                next_t += interval
                delay = next_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        producer.flush()
        return sent


def run_cameras(
    cameras: list[Camera],
    producer,
    frames_topic: str,
    truth_topic: str,
    count: int,
    on_sent: Callable[[SentFrame], None] | None = None,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Run cameras side by side, one thread each, sharing one (thread-safe) producer.

    Returns the frames each camera sent; ``on_sent`` sees every frame (from the cameras'
    threads), ``stop`` ends every stream early.
    """
    sent: dict[str, int] = {}

    def one(cam: Camera) -> None:
        sent[cam.camera_id] = cam.run(
            producer, frames_topic, truth_topic, count, on_sent=on_sent, stop=stop
        )

    threads = [threading.Thread(target=one, args=(c,), name=c.camera_id) for c in cameras]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    producer.flush()
    return sent
