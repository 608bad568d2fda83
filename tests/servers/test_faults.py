"""Faults without hands (issue 12), live: Redis killed mid-stream, workers killed with -9 and
brought back by the deploy supervisor, poison records among good ones.

One deployment for the module, started by ``deploy/up.sh`` exactly as a user starts one (2 edge
workers, 1 cloud worker, evaluator and exporter, every one under the supervisor), on its own
topics, consumer groups and Redis namespace. Each test streams from two cameras while it
injects its fault, then reads every result through ``ResultsView`` (exactly one per frame).
The stall each fault causes is printed (``pytest -s``) and asserted within bounds.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from producers.camera import Frame
from splitee.data import iter_zip_frames
from splitee.kafka_io import consumer, dlq, producer
from splitee.results import collect_results
from splitee.testing import Pipeline, free_port_block
from splitee.wire import FrameMeta, OffloadMeta, encode_tensor, header_map
from tests.conftest import REPO, SAMPLE
from tests.servers.conftest import deploy

WORKERS = ("edge-1", "edge-2", "cloud-1")


class RawKey(str):
    """A header key that kafka-python writes as bytes that are not UTF-8."""

    def encode(self, *_: object, **__: object) -> bytes:
        return b"k\xff\xfe"


def run_dir() -> Path:
    return Path(os.environ["SPLITEE_VAR_DIR"]) / "run"


def child_pid(name: str) -> int:
    return int((run_dir() / "child" / f"{name}.pid").read_text())


def restarts(name: str) -> int:
    path = run_dir() / f"{name}.restarts"
    return path.read_text().count(" restart: ") if path.exists() else 0


@pytest.fixture(scope="module")
def deployment(servers, tmp_path_factory):
    p = Pipeline.create(
        tmp_path_factory.mktemp("faults"),
        SPLITEE_DEPLOY__EDGE_WORKERS="2",
        SPLITEE_DEPLOY__CLOUD_WORKERS="1",
        SPLITEE_DEPLOY__METRICS_PORT_BASE=str(free_port_block(8)),
    )
    up = subprocess.run(
        ["bash", str(REPO / "deploy" / "up.sh"), "--no-producers"],
        env=p.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert up.returncode == 0, up.stderr[-3000:]
    try:
        yield p
    finally:
        subprocess.run(
            ["bash", str(REPO / "deploy" / "down.sh"), "--keep-servers"], env=p.env, timeout=120
        )


@pytest.fixture(scope="module")
def frames():
    return [Frame(b, y, i) for i, (_, b, y) in enumerate(iter_zip_frames(SAMPLE))]


def stream_with_fault(p: Pipeline, frames, per_camera: int, fps: float, fault) -> tuple:
    """Stream from two cameras in a thread, call ``fault()`` meanwhile; (sent, view, t_fault)."""
    run = f"f-{uuid.uuid4().hex[:6]}"
    box: dict = {}
    t = threading.Thread(target=lambda: box.update(sent=p.stream(frames, per_camera, fps, run)))
    t.start()
    time.sleep(3.0)
    t_fault = time.time()
    fault()
    t.join(timeout=600)
    assert not t.is_alive()
    ids = {f.meta.frame_id for f in box["sent"]}
    view = collect_results(p.settings.kafka, ids, timeout_s=240, run_id=run)
    return box["sent"], view, t_fault


def stall_after(view, t_fault: float) -> float:
    """The longest time without any result from the fault on (by the results' done_ts)."""
    done = sorted(r.done_ts for r in view.results.values() if r.done_ts >= t_fault - 1)
    edges = [t_fault, *done]
    return max(b - a for a, b in itertools.pairwise(edges)) if len(edges) > 1 else 0.0


def assert_one_result_each(sent, view, p: Pipeline) -> None:
    ids = {f.meta.frame_id for f in sent}
    missing = ids - set(view.results)
    assert not missing, f"{len(missing)} frames without a result\n{p.log_tail('cloud-1')}"
    assert set(view.results) == ids


def test_redis_killed_for_10s_mid_stream(deployment, frames):
    p = deployment
    before = {w: child_pid(w) for w in WORKERS}
    redis_pid = int((run_dir() / "redis.pid").read_text())

    def fault() -> None:
        os.kill(redis_pid, signal.SIGKILL)
        time.sleep(10)
        deploy("redis-start.sh")

    sent, view, t_fault = stream_with_fault(p, frames, 300, 25, fault)
    assert_one_result_each(sent, view, p)
    assert {w: child_pid(w) for w in WORKERS} == before, "a worker exited"
    assert all(restarts(w) == 0 for w in WORKERS)
    stall = stall_after(view, t_fault)
    print(
        json.dumps(
            {
                "fault": "redis kill -9 for 10 s",
                "frames": len(sent),
                "results": len(view.results),
                "duplicates": view.duplicates,
                "stall_s": round(stall, 1),
            }
        )
    )
    assert stall < 5.0  # frames keep flowing on cached statistics


def test_edge_and_cloud_killed_are_restarted_and_results_flow_within_15s(deployment, frames):
    p = deployment
    old = {w: child_pid(w) for w in ("edge-1", "cloud-1")}

    def fault() -> None:
        for pid in old.values():
            os.kill(pid, signal.SIGKILL)

    sent, view, t_fault = stream_with_fault(p, frames, 300, 25, fault)
    assert_one_result_each(sent, view, p)
    for w, pid in old.items():
        assert child_pid(w) != pid and restarts(w) >= 1, f"{w} was not restarted"
    stall = stall_after(view, t_fault)
    print(
        json.dumps(
            {
                "fault": "kill -9 edge-1 and cloud-1",
                "frames": len(sent),
                "results": len(view.results),
                "duplicates": view.duplicates,
                "stall_s": round(stall, 1),
            }
        )
    )
    assert stall <= 15.0


def _poison_offloads(good: OffloadMeta, meta: FrameMeta, feats: np.ndarray) -> list[tuple]:
    """The offload records of the fault report, each a (value, headers) pair."""
    base = meta.headers() + good.headers()

    def with_header(name: str, value: bytes) -> list:
        return [*((k, v) for k, v in base if k != name), (name, value)]

    nested = b"[" * 3000 + b"]" * 3000
    return [
        (encode_tensor(feats), with_header("pair", b"999")),
        (
            encode_tensor(feats),
            with_header("confidences", b"[null, null, null, null, null, null, null, null, null]"),
        ),
        (b"SPLT" + bytes([1, 0, 2, 0]) + (2**31 - 1).to_bytes(4, "little") * 2, base),
        (encode_tensor(feats), with_header("confidences", nested)),
        (encode_tensor(feats), with_header("confidences", b"[" + b"9" * 400 + b"]")),
        (
            encode_tensor(feats),
            with_header("confidences", b"[Infinity, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]"),
        ),
        (
            encode_tensor(feats),
            with_header("confidences", b"[1e300, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]"),
        ),
        (encode_tensor(np.full_like(feats, 3e38, dtype=np.float32), "float32"), base),
        (encode_tensor(feats), with_header("policy", b"splitee:{other}:arms")),
    ]


def test_poison_records_go_to_their_dlq_and_the_good_ones_behind_are_answered(deployment, frames):
    p = deployment
    k = p.settings.kafka
    before = {w: child_pid(w) for w in WORKERS}
    rng = np.random.default_rng(5)
    run = f"p-{uuid.uuid4().hex[:6]}"

    def meta(i: int, cam: str = "cam-p") -> FrameMeta:
        return FrameMeta(f"{cam}:{run}:{i:06d}", cam, time.time(), run_id=run)

    feats = rng.standard_normal((16, 32, 32)).astype(np.float32)
    good_om = OffloadMeta(
        arm=0,
        confidences=[0.2] + [None] * 8,
        codec="float16",
        policy="global",
        edge_ts=time.time(),
        edge_worker="test",
    )
    poison_off = _poison_offloads(good_om, meta(0, "cam-o"), feats)
    big_png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 194_000
    poison_frames = [
        (big_png, meta(1).headers()),
        (frames[0].jpeg, [*meta(2).headers(), (RawKey("x"), b"v")]),
        (b"\xff\xd8\xff" + b"\x00" * 16_777_000, meta(3).headers()),
    ]
    good = [(frames[i].jpeg, meta(100 + i).headers()) for i in range(20)]
    prod = producer(k)
    try:
        for value, headers in poison_off:
            prod.send(k.offload_topic, key=b"cam-o", value=value, headers=headers)
        for value, headers in [*poison_frames, *good]:
            prod.send(k.frames_topic, key=b"cam-p", value=value, headers=headers)
        prod.flush()
    finally:
        prod.close()
    ids = {meta(100 + i).frame_id for i in range(20)}
    view = collect_results(k, ids, timeout_s=180, run_id=run)
    assert set(view.results) >= ids, "good records behind the poison were not answered"
    dead = {}
    for topic, count in (
        (dlq(k.offload_topic, k), len(poison_off)),
        (dlq(k.frames_topic, k), len(poison_frames)),
    ):
        c = consumer(k, topic, consumer_timeout_ms=5000)
        reasons = [header_map(r.headers).get("dlq_reason", b"").decode() for r in c]
        c.close()
        dead[topic] = reasons
        assert len(reasons) >= count, f"{topic}: {reasons}"
    assert {w: child_pid(w) for w in WORKERS} == before, "a worker exited"
    print(
        json.dumps(
            {
                "fault": "poison records",
                "dead_letters": dead,
                "good_answered": len(ids & set(view.results)),
            }
        )
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_a_stalled_cloud_keeps_the_edge_bounded_and_loses_no_frame(deployment, frames):
    """Backpressure: the cloud worker frozen (SIGSTOP) for 20 s mid-stream. Offloads wait in
    Kafka, not in the edge: its memory stays flat, and every frame is answered once the cloud
    resumes."""
    p = deployment
    cloud = child_pid("cloud-1")
    edges = [child_pid("edge-1"), child_pid("edge-2")]
    rss: list[float] = []

    def fault() -> None:
        before = sum(rss_mb(e) for e in edges)
        os.kill(cloud, signal.SIGSTOP)
        try:
            for _ in range(20):
                time.sleep(1)
                rss.append(sum(rss_mb(e) for e in edges) - before)
        finally:
            os.kill(cloud, signal.SIGCONT)

    sent, view, t_fault = stream_with_fault(p, frames, 400, 25, fault)
    assert_one_result_each(sent, view, p)
    growth = max(rss)
    print(json.dumps({"fault": "cloud SIGSTOP for 20 s", "frames": len(sent),
                      "results": len(view.results), "edge_rss_growth_mb": round(growth, 1),
                      "stall_s": round(stall_after(view, t_fault), 1)}))  # fmt: skip
    assert growth < 100, f"edge memory grew by {growth:.0f} MB while the cloud was stalled"


def test_broker_killed_for_10s_mid_stream(deployment, frames):
    """The single broker killed with -9 and restarted after 10 s: cameras keep their frames,
    the workers ride it out (no restart), and results flow again soon after it is back."""
    p = deployment
    before = {w: child_pid(w) for w in WORKERS}
    kafka_pid = int((run_dir() / "kafka.pid").read_text())
    box: dict = {}

    def fault() -> None:
        os.kill(kafka_pid, signal.SIGKILL)
        time.sleep(10)
        deploy("kafka-start.sh")
        box["back"] = time.time()

    sent, view, t_fault = stream_with_fault(p, frames, 300, 25, fault)
    assert_one_result_each(sent, view, p)
    assert {w: child_pid(w) for w in WORKERS} == before, "a worker exited"
    first_after = min((r.done_ts for r in view.results.values() if r.done_ts > box["back"]),
                      default=float("inf"))  # fmt: skip
    recovery = first_after - box["back"]
    print(json.dumps({"fault": "broker kill -9 for 10 s", "frames": len(sent),
                      "results": len(view.results), "duplicates": view.duplicates,
                      "stall_s": round(stall_after(view, t_fault), 1),
                      "results_again_after_restart_s": round(recovery, 1)}))  # fmt: skip
    # results resume within a second of the broker being back (0.8 s here); 22 s in earlier
    # runs were the test cameras' kafka-python producer backing off up to 30 s, before the
    # harness streamed through the product's camera producer (1 s backoff). The aim
    # is 15 s; the bound catches a pipeline that waits out a timeout instead of reconnecting
    assert recovery <= 15.0
