"""Issue 12, live: a camera loses no frame while the broker is away, and readers survive records
the Kafka client cannot even parse.

The broker here is private to this module (its own ports and var dir, through the deploy
scripts), because the camera test stops and restarts it.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import threading
import time
from collections import Counter

import numpy as np
import pytest

from producers.camera import Camera, Frame, camera_producer, run_cameras
from producers.schedule import Schedule
from splitee.jpeg import encode_jpeg
from splitee.kafka_io import create_topics, producer
from splitee.results import collect_results, collect_truth, read_topic
from splitee.settings import KafkaSettings
from splitee.testing import free_ports
from splitee.wire import Result, header_map
from tests.conftest import REPO


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    """(KafkaSettings, start(), stop()) of a broker of this module's own."""
    kafka_port, controller_port = free_ports(2)
    env = {
        **os.environ,
        "SPLITEE_KAFKA_PORT": str(kafka_port),
        "SPLITEE_KAFKA_CONTROLLER_PORT": str(controller_port),
        "SPLITEE_VAR_DIR": str(tmp_path_factory.mktemp("kafka-var")),
    }

    def script(name: str) -> None:
        subprocess.run(["bash", str(REPO / "deploy" / name)], check=True, env=env, timeout=300)

    script("kafka-start.sh")
    k = KafkaSettings(bootstrap=f"127.0.0.1:{env['SPLITEE_KAFKA_PORT']}", partitions=2)
    create_topics(k)
    yield k, (lambda: script("kafka-start.sh")), (lambda: script("kafka-stop.sh"))
    script("kafka-stop.sh")


def written(k: KafkaSettings, topic: str, key) -> Counter:
    """How many times each frame id was written to ``topic`` (``key`` of a record)."""
    out: Counter = Counter()
    read_topic(k, topic, lambda r: out.update([key(r)]), None, 60)
    return out


def test_cameras_lose_no_frame_across_a_broker_outage(kafka):
    """Two cameras stream through one outage: ``long`` with the cameras' producer, whose
    delivery timeout outlasts the outage (exactly once: idempotent retries), ``short`` with a
    3 s delivery timeout (the producer gives records up, or gets stuck: the camera must send
    them again, replacing the producer if need be)."""
    k, start, stop = kafka
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 32, 32, 3), np.uint8)
    frames = [Frame(encode_jpeg(x), i, i) for i, x in enumerate(images)]
    producers = {
        "long": functools.partial(camera_producer, k),
        "short": functools.partial(
            camera_producer, k, delivery_timeout_ms=3000, request_timeout_ms=2000
        ),
    }
    got: dict[str, dict] = {}

    def stream(name: str) -> None:
        cam = Camera(
            camera_id=name,
            source=frames,
            schedule=Schedule.parse(["pristine"]),
            fps=40,
            run_id="outage",
        )
        got[name] = run_cameras([cam], producers[name], k.frames_topic, k.truth_topic, 400)

    threads = [threading.Thread(target=stream, args=(n,), daemon=True) for n in producers]
    for t in threads:
        t.start()
    time.sleep(2.0)  # mid-stream
    stop()
    down = time.monotonic()
    time.sleep(6.0)  # twice the short delivery timeout
    start()
    outage = time.monotonic() - down
    for t in threads:
        t.join(timeout=240)
        assert not t.is_alive(), "a camera never finished"
    frame_ids = written(k, k.frames_topic, lambda r: header_map(r.headers)["frame_id"].decode())
    truth_ids = written(k, k.truth_topic, lambda r: r.key.decode())
    print(json.dumps({"fault": f"broker down {outage:.0f} s", "cameras": got}))
    for name, report in got.items():
        assert report["delivered"] == report["sent"] == {name: 400}, report
        assert report["dropped"] == {name: 0}, report
        for ids in (frame_ids, truth_ids):
            mine = {f: n for f, n in ids.items() if f.startswith(f"{name}:")}
            assert len(mine) == 400, f"{name}: {400 - len(mine)} lost in a {outage:.0f} s outage"
            twice = sum(1 for n in mine.values() if n > 1)
            if name == "long":
                assert twice == 0 and report["retried"] == {name: 0}, report
            else:  # at least once: only frames the camera sent again may be there twice
                assert twice <= report["retried"][name], (twice, report)
    assert got["short"]["retried"]["short"] > 0, "the short delivery timeout never expired"


class RawKey(str):
    """A header key that kafka-python writes as arbitrary bytes (its own encode is used)."""

    def encode(self, *_: object, **__: object) -> bytes:
        return b"k\xff\xfe"


def test_readers_skip_records_the_client_cannot_parse(kafka):
    k, _, _ = kafka
    p = producer(k)
    good = [
        Result(f"ok-{i}", "cam-1", 1, 0.9, 0, "edge", 1.7e9, 1.7e9, run_id="raw") for i in range(4)
    ]
    for i, r in enumerate(good):
        p.send(k.results_topic, key=r.frame_id.encode(), value=r.encode())
        p.flush()  # one record per batch, so the poison takes only itself down
        if i == 1:
            p.send(k.results_topic, key=b"ok-1", value=b"{}", headers=[(RawKey("x"), b"v")])
            p.send(k.truth_topic, key=b"ok-1", value=b"{}", headers=[(RawKey("x"), b"v")])
            bad = {**json.loads(r.encode()), "frame_id": ["x"]}
            p.send(k.results_topic, key=b"bad", value=json.dumps(bad).encode())
            p.flush()
    p.send(k.truth_topic, key=b"ok-0", value=b'{"label": 1}')
    p.send(k.truth_topic, key=b"\xff", value=b'{"label": 1}')
    p.close()
    view = collect_results(k, {r.frame_id for r in good}, timeout_s=60, run_id="raw")
    assert set(view.results) == {r.frame_id for r in good}
    assert view.bad_reasons["corrupt_record"] >= 1 and view.bad_reasons["bad_result"] == 1
    truth = collect_truth(k, {"ok-0"}, timeout_s=60)
    assert truth["ok-0"]["label"] == 1 and truth.bad >= 2
