"""Reading results exactly once per frame, joining ground truth, and summarising a run.

The ``results`` topic is at-least-once: after a worker crash a frame may have two result
records. :class:`ResultsView` keeps the first result per frame id and counts the rest as
duplicates, so every consumer going through it sees exactly one result per frame.
Ground truth is read here, for evaluation only.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from kafka import TopicPartition

from splitee.kafka_io import consumer
from splitee.settings import KafkaSettings
from splitee.wire import Result, WireError


@dataclass
class ResultsView:
    """First result per frame id; later copies are counted, not kept."""

    results: dict[str, Result] = field(default_factory=dict)
    duplicates: int = 0
    bad: int = 0

    def add(self, value: bytes) -> None:
        try:
            r = Result.decode(value)
        except WireError:
            self.bad += 1
            return
        if r.frame_id in self.results:
            self.duplicates += 1
        else:
            self.results[r.frame_id] = r


def read_topic(k: KafkaSettings, topic: str, on_record, stop, timeout_s: float) -> None:
    """Read ``topic`` from the beginning without a consumer group until ``stop()`` or timeout.

    ``stop=None`` means: until the end offsets the topic had when reading started.
    """
    c = consumer(k, group_id=None, consumer_timeout_ms=500)
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
            batch = c.poll(timeout_ms=300)
            for recs in batch.values():
                for rec in recs:
                    on_record(rec)
        if not stop():
            raise TimeoutError(f"reading {topic}: not done after {timeout_s:.0f}s")
    finally:
        c.close()


def collect_results(
    k: KafkaSettings, expect: set[str] | None = None, timeout_s: float = 60.0, run_id: str = ""
) -> ResultsView:
    """Read results until every expected frame id has one (or timeout)."""
    view = ResultsView()

    def on(rec) -> None:
        view.add(rec.value)

    def done() -> bool:
        return expect.issubset(view.results)  # type: ignore[union-attr]

    with contextlib.suppress(TimeoutError):  # the caller sees what is missing
        read_topic(k, k.results_topic, on, done if expect is not None else None, timeout_s)
    if run_id:
        view.results = {f: r for f, r in view.results.items() if r.run_id == run_id}
    return view


def collect_truth(
    k: KafkaSettings, expect: set[str] | None = None, timeout_s: float = 30.0
) -> dict[str, dict]:
    truth: dict[str, dict] = {}

    def on(rec) -> None:
        truth[rec.key.decode()] = json.loads(rec.value)

    stop = (lambda: expect.issubset(truth)) if expect is not None else None
    read_topic(k, k.truth_topic, on, stop, timeout_s)
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
    }
