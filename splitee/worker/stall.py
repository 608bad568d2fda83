"""A watchdog for a worker whose consumer group has work but makes no progress.

faust can leave a consumer that is a Stable member of its group but never fetches again after
a rebalance that interrupted another one (faust-streaming issues #175, #523, #629). We saw it
once here: a cloud worker frozen (SIGSTOP) just after joining, resumed, rejoined, and then sat
idle for minutes beside 24 unconsumed offloads, until a second rebalance woke it. Nothing in
the worker fails, so nothing restarts it.

The watchdog asks the broker, not faust: every ``check_s`` it reads the group's committed
offsets and the source topic's end offsets (kafka-python, its own connection). A partition
*stalls* when it has lag and its committed offset has not moved for ``stall_s``. When one
does and this worker has not taken a batch for as long, the worker exits (fail-stop, status
75) and its supervisor starts it again, which makes it rejoin the group. A broker that does
not answer decides nothing (an outage is ridden out); a group that consumes slowly still moves
its offsets, so it is never taken for stuck.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from splitee.settings import KafkaSettings

log = logging.getLogger("splitee.worker.stall")

#: the exit status of a worker the watchdog stops (the supervisor restarts it)
STALL_EXIT = 75


class Progress:
    """When this worker last took a batch, and how many batches it still holds: a worker
    inside a batch (computing, delivering, or blocked on a full Redis buffer during an
    outage) is busy, not idle."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.in_flight = 0

    def took(self) -> None:
        self.last = time.monotonic()
        self.in_flight += 1

    def finished(self) -> None:
        self.in_flight -= 1
        self.last = time.monotonic()

    def idle_s(self, now: float) -> float:
        return 0.0 if self.in_flight else now - self.last


@dataclass
class StallDetector:
    """Which partitions have had lag without progress for ``stall_s`` seconds.

    >>> d = StallDetector(stall_s=30)
    >>> d.observe(0.0, {0: 5}, {0: 9}), d.observe(29.0, {0: 5}, {0: 9})
    ([], [])
    >>> d.observe(31.0, {0: 5}, {0: 9})   # lag, no progress for 31 s
    [0]
    >>> d.observe(32.0, {0: 6}, {0: 9})   # it moved: the clock starts again
    []
    >>> d.observe(99.0, {0: 9}, {0: 9})   # no lag, nothing to wait for
    []
    """

    stall_s: float
    _since: dict[int, tuple[int, float]] = field(default_factory=dict)

    def observe(
        self, now: float, committed: Mapping[int, int], ends: Mapping[int, int]
    ) -> list[int]:
        """The stalled partitions, given each partition's committed and end offset."""
        stalled = []
        for p, end in ends.items():
            done = committed.get(p, 0)
            if done >= end:
                self._since.pop(p, None)
                continue
            seen = self._since.get(p)
            if seen is None or seen[0] != done:
                self._since[p] = (done, now)
            elif now - seen[1] >= self.stall_s:
                stalled.append(p)
        return stalled


class GroupOffsets:
    """Reads a group's committed offsets and a topic's end offsets from the broker, on
    clients kept open between reads (and opened again after a failure)."""

    def __init__(self, k: KafkaSettings, group: str, topic: str) -> None:
        self.k, self.group, self.topic = k, group, topic
        self._clients: tuple | None = None

    def read(self) -> tuple[dict[int, int], dict[int, int]]:
        """(committed, end) offset per partition; a partition the group never committed
        counts from the log's start."""
        from splitee.kafka_io import admin, committed_and_end, consumer

        if self._clients is None:
            self._clients = (consumer(self.k, group_id=None), admin(self.k, timeout_s=5.0))
        c, a = self._clients
        try:
            offsets = committed_and_end(a, c, self.group, [self.topic])
            committed = {tp.partition: done for tp, (done, _) in offsets.items()}
            ends = {tp.partition: end for tp, (_, end) in offsets.items()}
            return committed, ends
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self._clients is not None:
            for client in self._clients:
                client.close()
            self._clients = None


def start_watchdog(
    k: KafkaSettings,
    group: str,
    topic: str,
    progress: Progress,
    stall_s: float,
    check_s: float = 10.0,
    exit_: Callable[[int], None] = os._exit,
    stop: threading.Event | None = None,
) -> threading.Thread | None:
    """Watch ``group`` on ``topic`` in a daemon thread (none when ``stall_s`` is 0).

    ``progress`` says how long this worker has been idle (no batch taken nor held); ``stop``
    ends the watch (tests)."""
    if stall_s <= 0:
        return None
    detector = StallDetector(stall_s)
    offsets = GroupOffsets(k, group, topic)
    stop = stop or threading.Event()

    def watch() -> None:
        while not stop.wait(check_s):
            try:
                committed, ends = offsets.read()
            except Exception as exc:  # the broker is away: decide nothing, ride it out
                log.debug("stall check skipped", extra={"error": repr(exc)})
                continue
            now = time.monotonic()
            stalled = detector.observe(now, committed, ends)
            idle = progress.idle_s(now)
            if stalled and idle >= stall_s:
                log.error(
                    "consumer stalled: partitions with lag made no progress; exiting so the "
                    "supervisor restarts this worker",
                    extra={"group": group, "partitions": stalled, "idle_s": round(idle, 1)},
                )
                logging.shutdown()
                exit_(STALL_EXIT)
                break
        offsets.close()

    thread = threading.Thread(target=watch, name="stall-watchdog", daemon=True)
    thread.start()
    return thread
