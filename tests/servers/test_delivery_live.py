"""Issue 12, live: a camera loses no frame while the broker is away, and readers survive records
the Kafka client cannot even parse.

The broker here is private to this module (its own ports and var dir, through the deploy
scripts), because the camera test stops and restarts it.
"""

from __future__ import annotations

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
from splitee.data import encode_jpeg
from splitee.kafka_io import create_topics, producer
from splitee.results import collect_results, collect_truth, read_topic
from splitee.settings import KafkaSettings
from splitee.testing import free_port
from splitee.wire import Result, header_map
from tests.conftest import REPO


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    """(KafkaSettings, start(), stop()) of a broker of this module's own."""
    env = {
        **os.environ,
        "SPLITEE_KAFKA_PORT": str(free_port()),
        "SPLITEE_KAFKA_CONTROLLER_PORT": str(free_port()),
        "SPLITEE_VAR_DIR": str(tmp_path_factory.mktemp("kafka-var")),
    }

    def script(name: str) -> None:
        subprocess.run(["bash", str(REPO / "deploy" / name)], check=True, env=env, timeout=300)

    script("kafka-start.sh")
    k = KafkaSettings(bootstrap=f"127.0.0.1:{env['SPLITEE_KAFKA_PORT']}", partitions=2)
    create_topics(k)
    yield k, (lambda: script("kafka-start.sh")), (lambda: script("kafka-stop.sh"))
    script("kafka-stop.sh")


def test_camera_delivers_every_frame_exactly_once_across_a_broker_outage(kafka):
    k, start, stop = kafka
    rng = np.random.default_rng(0)
    frames = [
        Frame(encode_jpeg(rng.integers(0, 255, (32, 32, 3), np.uint8)), i, i) for i in range(8)
    ]
    cam = Camera("cam-out", frames, Schedule.parse(["pristine"]), fps=40, run_id="outage")
    # a delivery timeout far shorter than the outage: the producer gives records up, the
    # camera must keep them and send them again
    prod = camera_producer(k, delivery_timeout_ms=3000, request_timeout_ms=2000, linger_ms=5)
    box: dict = {}
    t = threading.Thread(
        target=lambda: box.update(
            run_cameras([cam], prod, k.frames_topic, k.truth_topic, 400, retry_s=0.5)
        )
    )
    t0 = time.monotonic()
    t.start()
    time.sleep(2.0)
    stop()
    down = time.monotonic()
    time.sleep(6.0)  # twice the delivery timeout
    start()
    outage = time.monotonic() - down
    t.join(timeout=240)
    assert not t.is_alive(), "the camera never finished"
    prod.close()
    took = time.monotonic() - t0
    assert box["delivered"] == {"cam-out": 400} and box["sent"] == box["delivered"]
    assert box["dropped"] == {"cam-out": 0}
    assert box["retried"]["cam-out"] > 0, f"nothing was retried in a {outage:.0f} s outage"

    ids: Counter[str] = Counter()
    read_topic(
        k, k.frames_topic, lambda r: ids.update([header_map(r.headers)["frame_id"]]), None, 60
    )
    truth: Counter[bytes] = Counter()
    read_topic(k, k.truth_topic, lambda r: truth.update([r.key]), None, 60)
    mine = {f for f in ids if f.startswith(b"cam-out:")}
    assert len(mine) == 400, f"{400 - len(mine)} frames lost ({took:.0f} s, outage {outage:.0f} s)"
    dup = {f: n for f, n in ids.items() if n > 1}
    assert not dup, f"{len(dup)} frames written twice"
    assert len([x for x in truth if x.startswith(b"cam-out:")]) == 400
    assert max(truth.values()) == 1


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
            p.send(k.results_topic, key=b"bad", value=json.dumps({"frame_id": ["x"]}).encode())
            p.flush()
    p.send(k.truth_topic, key=b"ok-0", value=b'{"label": 1}')
    p.send(k.truth_topic, key=b"\xff", value=b'{"label": 1}')
    p.close()
    view = collect_results(k, {r.frame_id for r in good}, timeout_s=60, run_id="raw")
    assert set(view.results) == {r.frame_id for r in good}
    assert view.bad_reasons["corrupt_record"] >= 1 and view.bad_reasons["bad_result"] == 1
    truth = collect_truth(k, {"ok-0"}, timeout_s=60)
    assert truth["ok-0"]["label"] == 1 and truth.bad >= 2
