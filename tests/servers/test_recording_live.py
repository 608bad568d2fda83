"""Record a live stream from real Kafka, replay it into fresh topics, compare; policy restore.

Two cameras stream 5 s at 25 fps into their own topics while ``splitee record`` runs; the
recording is then replayed at max speed (twice, ``--loop 2``) and at speed 1 into fresh topics.
No workers are needed: what is compared is what lands in Kafka.
"""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from collections import defaultdict

import pytest

from policy_store.redis_store import RedisStore
from policy_store.stats import Delta
from producers.camera import Camera, Frame, run_cameras
from producers.schedule import Schedule
from splitee import policy_setup
from splitee.data import iter_zip_frames
from splitee.kafka_io import create_topics, producer
from splitee.recording import open_recording
from splitee.results import read_topic
from splitee.settings import Settings
from splitee.testing import REPO, SPLITEE, Pipeline
from splitee.wire import header_map
from tests.conftest import SAMPLE

PER_CAMERA, FPS = 125, 25.0  # 5 s of frames from each of 2 cameras
CHANGED = {"frame_id", "run_id", "capture_ts"}  # what a replay rewrites (docs/recording.md)


def store_of(s: Settings) -> RedisStore:
    return policy_setup.store(s, 9, cache_ms=0)  # the workers' keys (the model's)


def frames_delta(pulls: dict[int, int], reward: float) -> Delta:
    """A delta of ``pulls[arm]`` frames per arm, each rewarded ``reward`` (frames as a worker
    adds them: the store applies frames, not bare sums)."""
    d = Delta.zeros(9)
    for arm, count in pulls.items():
        for _ in range(count):
            d.add(arm, [(arm, reward)])
    return d


@pytest.fixture(scope="module")
def live(servers, tmp_path_factory):
    """A pipeline's topics, a policy state, and a recording of a live 2-camera stream."""
    tmp = tmp_path_factory.mktemp("live")
    p = Pipeline.create(tmp)
    s = p.settings
    store = store_of(s)
    store.apply("global", frames_delta({j: j for j in range(9)}, 0.1))  # arm j pulled j times
    frames = [Frame(b, y, i) for i, (_, b, y) in enumerate(iter_zip_frames(SAMPLE))]
    out = tmp / "rec"
    rec_cmd = [*SPLITEE, "record", "--topics", "frames,truth", "--out", str(out)]
    rec_cmd += ["--count", str(2 * PER_CAMERA), "--from-beginning", "--no-progress"]
    recorder = subprocess.Popen(rec_cmd, env=p.env, cwd=REPO, stdout=subprocess.PIPE, text=True)
    sent = p.stream(
        frames, PER_CAMERA, FPS, schedules=(["pristine"], ["pristine@60f", "noise:0.1"])
    )
    stdout, _ = recorder.communicate(timeout=120)
    assert recorder.returncode == 0, stdout
    store.apply("global", frames_delta({j: 1 for j in range(9)}, 1.0))  # state moves on
    return p, out, sent, json.loads(stdout.strip().splitlines()[-1])


def fresh(p: Pipeline) -> dict[str, str]:
    """Environment for a replay into new frames and truth topics."""
    tag = uuid.uuid4().hex[:8]
    env = dict(p.env)
    env["SPLITEE_KAFKA__FRAMES_TOPIC"] = f"r{tag}-frames"
    env["SPLITEE_KAFKA__TRUTH_TOPIC"] = f"r{tag}-truth"
    return env


def settings_of(env: dict[str, str]) -> Settings:
    import os

    old = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(old)


def run_cli(env: dict[str, str], *args: str) -> dict:
    out = subprocess.run(
        [*SPLITEE, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def read_all(s: Settings, topic: str) -> list:
    recs: list = []
    read_topic(s.kafka, topic, recs.append, None, 60)
    return recs


def by_key(recs) -> dict[bytes, list]:
    """Records grouped by key, each group in (partition, offset) order = per-key order."""
    out: dict[bytes, list] = defaultdict(list)
    for r in sorted(recs, key=lambda r: (r.partition, r.offset)):
        out[r.key].append(r)
    return out


def test_recording_holds_exactly_the_live_stream(live):
    p, out, sent, summary = live
    assert summary["counts"] == {"frames": 250, "truth": 250}
    assert summary["stop_reason"] == "count"
    rec = open_recording(out)
    m = rec.manifest
    assert m.complete and abs(m.seconds - (PER_CAMERA - 1) / FPS) < 0.5
    values = {}
    for r in rec.topic("frames").records():
        values[r.header("frame_id").decode()] = r.value
    assert values == {f.meta.frame_id: f.jpeg for f in sent}
    labels = {r.key.decode(): json.loads(r.value)["label"] for r in rec.topic("truth").records()}
    assert labels == {f.meta.frame_id: f.label for f in sent}
    snap = m.policy["start"]["policies"]["global"]
    assert snap["t"] == 36 and snap["pulls"] == list(range(9))
    assert m.policy["end"]["policies"]["global"]["t"] == 36  # nothing ran while recording
    assert m.settings["kafka"]["frames_topic"] == p.settings.kafka.frames_topic


def test_replay_at_max_speed_reproduces_the_stream_with_a_run_id(live):
    p, out, _, _ = live
    env = fresh(p)
    stats = run_cli(env, "replay", str(out), "--speed", "max", "--loop", "2", "--run-id", "RX")
    assert stats["messages"] == 2 * 500 and stats["run_id"] == "RX"
    s = settings_of(env)
    rec = open_recording(out)
    original = by_key(_as_kafka(rec.topic("frames").records()))
    replayed = by_key(read_all(s, s.kafka.frames_topic))
    assert set(replayed) == set(original) == {b"cam-1", b"cam-2"}
    for key, recs in original.items():
        again = replayed[key]
        assert len(again) == 2 * len(recs)
        for loop in (0, 1):
            for a, b in zip(recs, again[loop * len(recs) : (loop + 1) * len(recs)], strict=True):
                ha, hb = header_map(a.headers), header_map(b.headers)
                assert b.value == a.value  # same bytes, same per-key order
                assert [h for h, _ in b.headers if h not in CHANGED] == [
                    h for h, _ in a.headers if h not in CHANGED
                ]
                assert {h: v for h, v in hb.items() if h not in CHANGED} == {
                    h: v for h, v in ha.items() if h not in CHANGED
                }
                assert hb["frame_id"] == f"RX/{loop}/".encode() + ha["frame_id"]
                assert hb["run_id"] == b"RX"
    truth = {r.key: json.loads(r.value) for r in read_all(s, s.kafka.truth_topic)}
    assert len(truth) == 2 * 250
    for r in rec.topic("truth").records():
        for loop in (0, 1):
            t = truth[f"RX/{loop}/".encode() + r.key]
            assert t == {**json.loads(r.value), "run_id": "RX"}


def _as_kafka(records):
    """Recorded rows shaped like kafka-python records, for by_key()."""
    from types import SimpleNamespace

    return [
        SimpleNamespace(
            key=r.key, value=r.value, headers=r.headers, partition=r.partition, offset=r.offset
        )
        for r in records
    ]


def test_replay_at_speed_1_keeps_the_recorded_pace(live):
    p, out, _, _ = live
    env = fresh(p)
    stats = run_cli(env, "replay", str(out), "--speed", "1", "--no-progress")
    s = settings_of(env)
    ts = [r.timestamp for r in read_all(s, s.kafka.frames_topic) + read_all(s, s.kafka.truth_topic)]
    replay_span = (max(ts) - min(ts)) / 1000
    rec_span = open_recording(out).manifest.seconds
    err = abs(replay_span - rec_span) / rec_span
    print(f"speed 1: recorded {rec_span:.3f} s, replayed {replay_span:.3f} s, error {err:.2%}")
    assert err < 0.05, (replay_span, rec_span, stats)


def test_restore_policy_puts_back_the_recordings_start_state(live):
    p, out, _, _ = live
    env = fresh(p)
    s = settings_of(env)
    assert store_of(s).read_fresh("global").t == 45
    create_topics(s.kafka, {s.kafka.frames_topic: 4, s.kafka.truth_topic: 4})
    run_cli(env, "replay", str(out), "--speed", "max", "--restore-policy", "--no-progress")
    st = store_of(s).read_fresh("global")
    assert float(st.t) == 36 and st.pulls.tolist() == list(range(9))


@pytest.mark.filterwarnings("ignore::splitee.recording.RecordingWarning")
def test_stopped_and_killed_recorders_leave_readable_recordings(live, tmp_path):
    """SIGTERM ends a recording cleanly (every frame labelled); SIGKILL leaves an incomplete
    one that reads up to its last complete batch, with a warning."""
    import signal
    import time

    from splitee.recording import RecordingWarning

    p, _, _, _ = live
    env = fresh(p)
    s = settings_of(env)
    create_topics(s.kafka, {s.kafka.frames_topic: 4, s.kafka.truth_topic: 4})
    procs = {}
    for name in ("term", "kill"):
        cmd = [*SPLITEE, "record", "--out", str(tmp_path / name), "--from-beginning"]
        procs[name] = subprocess.Popen(
            [*cmd, "--no-progress"], env=env, cwd=REPO, stdout=subprocess.PIPE, text=True
        )
    frames = [Frame(b, y, i) for i, (_, b, y) in enumerate(iter_zip_frames(SAMPLE))]
    cam = Camera(
        camera_id="cam-1", source=frames, schedule=Schedule.parse(["pristine"]), fps=100.0, seed=3
    )
    prod = producer(s.kafka)
    topics = (s.kafka.frames_topic, s.kafka.truth_topic)
    t = threading.Thread(target=run_cameras, args=([cam], prod, *topics, 400))
    t.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until a batch of each recorder is on disk
            sizes = [(tmp_path / n / "frames.arrow") for n in procs]
            if all(f.exists() and f.stat().st_size > 0 for f in sizes):
                break
            time.sleep(0.2)
        procs["kill"].send_signal(signal.SIGKILL)
        procs["term"].send_signal(signal.SIGTERM)
        out, _ = procs["term"].communicate(timeout=60)
        procs["kill"].wait(10)
    finally:
        t.join(30)
        prod.close()
    assert procs["term"].returncode == 0, out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stop_reason"] == "stopped"
    assert summary["counts"]["frames"] == summary["counts"]["truth"] > 0
    clean = open_recording(tmp_path / "term")
    assert clean.manifest.complete and clean.warnings == []
    with pytest.warns(RecordingWarning, match="never completed"):
        cut = open_recording(tmp_path / "kill")
    assert not cut.manifest.complete and cut.topic("frames").table.num_rows > 0
