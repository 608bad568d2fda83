"""Reading results exactly once per frame, joining ground truth, and summarising a run.

The ``results`` topic is at-least-once: after a worker crash a frame may have two result
records. :class:`ResultsView` keeps the first result per frame id and counts the rest as
duplicates, so every consumer going through it sees exactly one result per frame.
Ground truth is read here, for evaluation only.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from kafka import TopicPartition

from splitee.kafka_io import consumer, poll_skipping_corrupt
from splitee.settings import KafkaSettings
from splitee.wire import Result, WireError, decode_frame_id, decode_truth

log = logging.getLogger("splitee.results")


@dataclass
class ResultsView:
    """First result per frame id; later copies are counted, not kept.

    A record that is not a valid result (bad JSON, wrong field types, unknown version, not
    parsable by the client at all) is skipped and counted in ``bad``, by reason in
    ``bad_reasons``: reading results never raises because of one record.
    """

    results: dict[str, Result] = field(default_factory=dict)
    duplicates: int = 0
    bad: int = 0
    bad_reasons: Counter[str] = field(default_factory=Counter)

    def add(self, value: bytes | None) -> None:
        try:
            if value is None:
                raise WireError("empty", "result record has no value")
            r = Result.decode(value)
        except WireError as exc:
            self.reject(exc.reason)
            return
        if r.frame_id in self.results:
            self.duplicates += 1
        else:
            self.results[r.frame_id] = r

    def reject(self, reason: str) -> None:
        self.bad += 1
        self.bad_reasons[reason] += 1


class TruthTable(dict[str, dict]):
    """frame id → its truth record (:func:`splitee.wire.decode_truth`); ``bad`` counts the
    records skipped as invalid (a bad key or value, or not parsable by the client)."""

    bad: int = 0


def read_topic(
    k: KafkaSettings,
    topic: str,
    on_record,
    stop,
    timeout_s: float,
    on_corrupt: Callable[[], None] | None = None,
) -> None:
    """Read ``topic`` from the beginning without a consumer group until ``stop()`` or timeout.

    ``stop=None`` means: until the end offsets the topic had when reading started. A record
    the Kafka client cannot parse is skipped, and ``on_corrupt()`` called
    (:func:`splitee.kafka_io.poll_skipping_corrupt`).
    """
    c = consumer(k, group_id=None, consumer_timeout_ms=500)

    def corrupt(tp: TopicPartition, offset: int, exc: Exception) -> None:
        log.warning("skipped a record the client cannot parse at %s/%s: %s", tp, offset, exc)
        if on_corrupt is not None:
            on_corrupt()

    try:
        deadline = time.monotonic() + 10
        parts = None
        while not parts:
            parts = c.partitions_for_topic(topic)
            if not parts:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"topic {topic} does not exist")
                time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        c.assign(tps)
        c.seek_to_beginning()
        if stop is None:
            ends = c.end_offsets(tps)

            def stop() -> bool:
                return all(c.position(tp) >= off for tp, off in ends.items())

        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if stop():
                return
            for recs in poll_skipping_corrupt(c, 300, corrupt).values():
                for rec in recs:
                    on_record(rec)
        if not stop():
            raise TimeoutError(f"reading {topic}: not done after {timeout_s:.0f}s")
    finally:
        c.close()


def collect_results(
    k: KafkaSettings, expect: set[str] | None = None, timeout_s: float = 60.0, run_id: str = ""
) -> ResultsView:
    """Read results until every expected frame id has one (or timeout); bad records are
    skipped and counted in the view's ``bad``."""
    view = ResultsView()

    def on(rec) -> None:
        view.add(rec.value)

    def done() -> bool:
        return expect.issubset(view.results)  # type: ignore[union-attr]

    with contextlib.suppress(TimeoutError):  # the caller sees what is missing
        read_topic(
            k,
            k.results_topic,
            on,
            done if expect is not None else None,
            timeout_s,
            lambda: view.reject("corrupt_record"),
        )
    if run_id:
        view.results = {f: r for f, r in view.results.items() if r.run_id == run_id}
    return view


def collect_truth(
    k: KafkaSettings, expect: set[str] | None = None, timeout_s: float = 30.0
) -> TruthTable:
    """Read the truth topic: frame id → truth record; invalid records are counted in ``bad``."""
    truth = TruthTable()

    def bad() -> None:
        truth.bad += 1

    def on(rec) -> None:
        try:
            truth[decode_frame_id(rec.key)] = decode_truth(rec.value)
        except WireError:
            bad()

    stop = (lambda: expect.issubset(truth)) if expect is not None else None
    read_topic(k, k.truth_topic, on, stop, timeout_s, bad)
    return truth


def summarize(results: dict[str, Result], truth: dict[str, dict], final_cost: float) -> dict:
    """Frames, accuracy, cost reduction, offload fraction, arms and latency of a run."""
    ids = [f for f in results if f in truth]
    if not ids:
        return {"frames": 0}
    rs = [results[f] for f in ids]
    correct = np.array([r.prediction == truth[r.frame_id]["label"] for r in rs])
    cost = np.array([r.cost for r in rs])
    lat = np.array([max(0.0, r.done_ts - r.capture_ts) for r in rs])
    arms = Counter(r.arm for r in rs)
    by_dist: dict[str, list[bool]] = {}
    for r, ok in zip(rs, correct, strict=True):
        by_dist.setdefault(truth[r.frame_id].get("distortion", "?"), []).append(bool(ok))
    return {
        "frames": len(rs),
        "accuracy": round(float(correct.mean()), 4),
        "cost": round(float(cost.mean()), 4),
        "cost_reduction": round(1 - float(cost.mean()) / final_cost, 4),
        "offload_fraction": round(float(np.mean([r.where == "cloud" for r in rs])), 4),
        "arms": {str(a + 1): arms[a] for a in sorted(arms)},
        "latency_p50_s": round(float(np.percentile(lat, 50)), 4),
        "latency_p99_s": round(float(np.percentile(lat, 99)), 4),
        "accuracy_by_distortion": {d: round(float(np.mean(v)), 4) for d, v in by_dist.items()},
        **_bytes_summary(rs, truth),
    }


def _bytes_summary(rs: list[Result], truth: dict[str, dict]) -> dict:
    """Offloaded bytes per frame (0 for frames that exit at the edge) against the frames' own
    JPEG bytes, when the cameras recorded them in the truth records."""
    sent = np.array([r.offload_bytes or 0 for r in rs], dtype=np.float64)
    out = {"offload_bytes_per_frame": round(float(sent.mean()), 1)}
    jpeg = [truth[r.frame_id].get("jpeg_bytes") for r in rs]
    if all(isinstance(j, int) for j in jpeg):
        out["jpeg_bytes_per_frame"] = round(float(np.mean(jpeg)), 1)
        out["offload_bytes_vs_jpeg"] = round(float(sent.sum() / max(1, sum(jpeg))), 4)
    return out
