"""Replaying a recording: into Kafka for the live pipeline, or offline through the evaluator.

**Into Kafka** (:func:`replay_to_kafka`). Records are merged across partitions by their
recorded timestamps (each partition keeps its offset order, so per-key order holds) and sent
with the recorded keys, values and headers through the idempotent ``acks=all`` producer, paced
by the recorded inter-arrival times divided by ``speed`` (``None``: as fast as possible). A
role (``frames``, ``truth`` …) goes to the topic the current settings give it, so a replay can
target fresh topics. The producer's default partitioner places each key, so one key's records
stay in one partition, in order. To keep a replay apart from the original run (and from other
replays) every frame gets a run id, and these documented changes are made:

* header ``frame_id`` → ``<run_id>/<loop>/<original frame id>`` (results are deduplicated by
  frame id, so the original's results never hide the replay's);
* header ``run_id`` → the replay's run id (added if the frame had none);
* header ``capture_ts`` → the time the frame is sent again, so latencies stay meaningful;
* ``truth`` records: the key becomes the new frame id and the JSON ``run_id`` field the run id.

Everything else — keys of frames, values, other headers and their order — is sent as recorded.

**Offline** (:func:`offline_ab`). The recorded JPEGs are decoded, labelled from the recorded
truth (joined on frame id), grouped by the recorded distortion and run once through the model
of the settings; then the bandit policies are replayed over the exit outputs by the same engine
as ``splitee evaluate`` (:func:`splitee.evaluate.runner.run_evaluation`), so a recording of
clean frames gives exactly the numbers ``splitee evaluate`` gives on those frames. A real-size
backbone's frames are fitted as the edge fits them and priced and answered as the workers do
(:mod:`splitee.evaluate.recorded`: the send-frame arm at each frame's recorded JPEG size, the
bottleneck's answers and bytes), so a live run and the replay of its own recording compare.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from splitee.recorder import snapshot_store
from splitee.recording import ROLES, Record, Recording, RecordingError
from splitee.settings import KafkaSettings, Settings
from splitee.wire import WireError, decode_frame_id, decode_truth


# --------------------------------------------------------------------------- into Kafka
def new_run_id() -> str:
    return f"replay-{uuid.uuid4().hex[:8]}"


def replay_frame_id(frame_id: str, run_id: str, loop: int) -> str:
    """The frame id a replayed frame carries: unique per run and loop, original recoverable."""
    return f"{run_id}/{loop}/{frame_id}"


def rewrite(
    role: str | None, rec: Record, run_id: str, loop: int, now: float
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """(key, value, headers) to send for a recorded record (the module docstring's rules)."""
    key, value = rec.key, rec.value
    headers = list(rec.headers)
    names = [k for k, _ in headers]
    if "frame_id" in names:
        out = []
        for k, v in headers:
            if k == "frame_id":
                v = replay_frame_id(v.decode(errors="replace"), run_id, loop).encode()
            elif k == "run_id":
                v = run_id.encode()
            elif k == "capture_ts":
                v = repr(now).encode()
            out.append((k, v))
        if "run_id" not in names:
            out.append(("run_id", run_id.encode()))
        headers = out
    if role == "truth" and key is not None:
        key = replay_frame_id(key.decode(errors="replace"), run_id, loop).encode()
        try:  # an invalid truth record is replayed as recorded (its readers skip it)
            obj = decode_truth(value)
            obj["run_id"] = run_id
            value = json.dumps(obj).encode()
        except WireError:
            pass
    return key, value, headers


def destination(role: str | None, topic: str, k: KafkaSettings) -> str:
    """Where a recorded topic is replayed: the settings' topic for its role, else its name."""
    return getattr(k, f"{role}_topic") if role in ROLES else topic


@dataclass
class ReplayStats:
    run_id: str
    messages: int
    bytes: int
    seconds: float
    recorded_seconds: float
    speed: float | None
    loops: int
    max_lateness_s: float
    topics: dict[str, str]

    @property
    def msg_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "msg_per_s": round(self.msg_per_s, 1),
            "mb_per_s": round(self.mb_per_s, 3),
        }


def replay_to_kafka(
    s: Settings,
    rec: Recording,
    speed: float | None = 1.0,
    loops: int = 1,
    run_id: str | None = None,
    restore_policy: bool = False,
    progress: bool = True,
    producer_factory: Callable | None = None,
) -> ReplayStats:
    """Republish a recording into Kafka (see the module docstring); returns what it sent.

    ``speed``: 1 = recorded pace, 4 = four times faster, None = no pacing. ``loops`` > 1 plays
    the recording again right after itself (one mean inter-arrival time later), each loop with
    its own frame ids. ``restore_policy`` first restores the recording's start snapshot of the
    policy statistics into Redis, so the pipeline starts from the state the recording did.
    """
    from tqdm import tqdm

    from splitee.kafka_io import create_topics, producer

    if speed is not None and speed <= 0:
        raise ValueError("speed must be positive (or None for as fast as possible)")
    if loops < 1:
        raise ValueError("loops must be at least 1")
    run_id = run_id or new_run_id()
    k = s.kafka
    if restore_policy:
        restore_start_policy(s, rec)
    entries = {key: td.entry for key, td in rec.topics.items()}
    dest = {key: destination(e.role, e.topic, k) for key, e in entries.items()}
    create_topics(k, {t: k.partitions for t in set(dest.values())})
    merged = rec.merged()
    if not merged:
        raise RecordingError(f"{rec.path}: nothing to replay")
    t_first = merged[0][1].timestamp
    span = (merged[-1][1].timestamp - t_first) / 1000.0
    gap = span / max(1, len(merged) - 1)
    prod = (producer_factory or producer)(k, linger_ms=5 if speed else 20, batch_size=1 << 18)
    for t in set(dest.values()):
        prod.partitions_for(t)  # fetch metadata now: a first send would wait for it, late
    failures: list[BaseException] = []
    sent = nbytes = 0
    late = 0.0
    bar = tqdm(total=len(merged) * loops, desc="replay", unit="msg", disable=not progress)
    start = time.monotonic()
    try:
        for loop in range(loops):
            loop_start = start + loop * (span + gap) / (speed or 1.0)
            for key, r in merged:
                if speed is not None:
                    due = loop_start + (r.timestamp - t_first) / 1000.0 / speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    else:
                        late = max(late, -delay)
                kk, vv, hh = rewrite(entries[key].role, r, run_id, loop, time.time())
                fut = prod.send(dest[key], key=kk, value=vv, headers=hh)
                fut.add_errback(failures.append)
                sent += 1
                nbytes += len(kk or b"") + len(vv or b"") + sum(len(a) + len(b) for a, b in hh)
                bar.update(1)
                if failures:
                    raise RecordingError(f"replay: Kafka refused a record: {failures[0]}")
        prod.flush()
        seconds = time.monotonic() - start
    finally:
        bar.close()
        prod.close()
    if failures:
        raise RecordingError(f"replay: {len(failures)} records failed: {failures[0]}")
    return ReplayStats(
        run_id, sent, nbytes, seconds, span, speed, loops, round(late, 4), dict(dest)
    )


def restore_start_policy(s: Settings, rec: Recording) -> list[str]:
    """Restore the policy snapshot taken when the recording started (into these settings'
    Redis namespace); RecordingError if the recording has none."""
    snap = rec.manifest.policy.get("start")
    if not snap:
        why = rec.manifest.policy.get("error") or "none was taken"
        raise RecordingError(f"{rec.path} has no policy snapshot at its start ({why})")
    store = snapshot_store(s)
    snap = {**snap, "namespace": store.namespace}
    try:
        return store.restore(snap)
    except ValueError as exc:
        raise RecordingError(f"cannot restore the recording's policy snapshot: {exc}") from None


def parse_speed(text: str) -> float | None:
    """``max`` → None (no pacing), else a positive factor (``1``, ``4``, ``0.5``)."""
    if text.strip().lower() == "max":
        return None
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"speed {text!r} is not a number or 'max'") from None
    if not v > 0:
        raise ValueError(f"speed must be positive, got {text}")
    return v


# --------------------------------------------------------------------------- offline
#: ``--policies`` names → the evaluator's bandit methods.
POLICY_METHODS = {
    "ucb1": "splitee-ucb1",
    "splitee": "splitee-ucb1",
    "splitee-ucb1": "splitee-ucb1",
    "isplitee": "isplitee-online",
    "isplitee-online": "isplitee-online",
    "isplitee-full": "isplitee-full",
}


def bandit_methods(names: list[str]) -> list[str]:
    """Map ``isplitee,ucb1,…`` to evaluator method names, refusing unknown ones clearly."""
    out = []
    for n in names:
        n = n.strip().lower()
        if not n:
            continue
        if n not in POLICY_METHODS:
            raise ValueError(
                f"unknown policy {n!r}: choose from {sorted(POLICY_METHODS)} (fixed arms, "
                "best-fixed, edge-only and cloud-only are always reported)"
            )
        if POLICY_METHODS[n] not in out:
            out.append(POLICY_METHODS[n])
    if not out:
        raise ValueError("no policies given")
    return out


@dataclass
class RecordedFrames:
    """The labelled frames of a recording, in recorded order, grouped by distortion."""

    images: np.ndarray
    labels: np.ndarray
    distortions: list[str]
    frame_ids: list[str]
    dropped: dict[str, int]
    jpeg_bytes: np.ndarray  # each frame's recorded JPEG size: what the send-frame arm carries

    def groups(self, as_recorded: bool = False) -> dict[str, np.ndarray]:
        """distortion → frame indices, in order of first appearance (the schedule's order);
        ``as_recorded``: one stream of every frame in recorded order (:data:`AS_RECORDED`)."""
        if as_recorded:
            return {AS_RECORDED: np.arange(len(self.labels))}
        out: dict[str, list[int]] = {}
        for i, d in enumerate(self.distortions):
            out.setdefault(d, []).append(i)
        return {d: np.asarray(ix) for d, ix in out.items()}


#: The setting name of a recording replayed as one stream, in its own order.
AS_RECORDED = "as-recorded"


def stream_orders(as_recorded: bool, n: int) -> np.ndarray | None:
    """The stream orders of one group: the recorded order itself (one run), or None (the
    evaluator's seeded random orders)."""
    return np.arange(n)[None, :] if as_recorded else None


def setting_distortion(name: str):
    """The Distortion a group's name stands for (the recorded stream mixes them: none)."""
    from splitee.distortions import Distortion

    return Distortion() if name == AS_RECORDED else Distortion.parse(name)


def recorded_frames(
    rec: Recording,
    fit: int | None = None,
    max_aspect: float | None = None,
    max_bytes: int | None = None,
) -> RecordedFrames:
    """Decode the recorded frames and join their labels and distortions from the truth topic.

    Order: frames merged by timestamp across partitions, each camera (partition) in offset
    order — the order the pipeline saw them. Frames without a valid frame id or a valid truth
    record (:func:`splitee.wire.decode_truth`), or not decodable (the live edge would
    dead-letter them), are dropped and counted, as are frames over ``max_bytes`` (the edge's
    ``max_frame_bytes``: ``oversized``). ``fit``: real-size frames, each fitted to
    ``fit``×``fit`` as the edge does (:func:`splitee.images.decode_fit`, ``max_aspect`` its
    bound); None: frames of one fixed size (CIFAR), decoded as they are.
    """
    from splitee.distortions import Distortion
    from splitee.images import decode_fit
    from splitee.jpeg import CorruptFrameError, decode_jpeg

    truth: dict[str, dict] = {}
    for r in rec.topic("truth").records():
        try:
            truth[decode_frame_id(r.key)] = decode_truth(r.value)
        except WireError:
            continue  # the frame it labels is counted as no_truth
    images, labels, dists, ids, sizes = [], [], [], [], []
    dropped = {"no_truth": 0, "corrupt": 0, "no_frame_id": 0, "oversized": 0}
    for _, r in rec.merged(["frames"]):
        try:
            fid = decode_frame_id(r.header("frame_id"), "bad_header")
        except WireError:
            dropped["no_frame_id"] += 1
            continue
        t = truth.get(fid)
        if t is None:
            dropped["no_truth"] += 1
            continue
        data = r.value or b""
        if max_bytes is not None and len(data) > max_bytes:
            dropped["oversized"] += 1  # never decoded: the edge refuses it by its size
            continue
        try:
            img = decode_jpeg(data) if fit is None else decode_fit(data, fit, max_aspect=max_aspect)
            dist = str(Distortion.parse(str(t.get("distortion", "pristine"))))
        except (CorruptFrameError, ValueError):
            dropped["corrupt"] += 1
            continue
        images.append(img)
        labels.append(t["label"])
        dists.append(dist)
        ids.append(fid)
        sizes.append(len(data))
    if not images:
        raise RecordingError(f"{rec.path}: no labelled, decodable frames ({dropped})")
    if len({im.shape for im in images}) > 1:
        raise RecordingError(
            f"{rec.path}: frames of several sizes; this model is not a real-size backbone"
        )
    labels_ = np.asarray(labels, np.int64)
    return RecordedFrames(np.stack(images), labels_, dists, ids, dropped, np.asarray(sizes))


def offline_ab(
    s: Settings,
    rec: Recording,
    policies: list[str],
    seeds: int,
    seed: int | None = None,
    model_path: Path | None = None,
    as_recorded: bool = False,
) -> dict:
    """Replay bandit policies over a recording without Kafka, deterministically.

    ``seeds`` random stream orders per distortion group (from ``seed``, default policy.seed),
    costs and rewards from the policy settings; returns the evaluator's summary dict (write it
    with :func:`splitee.evaluate.runner.write_outputs`). ``as_recorded``: instead, every frame
    as one stream in the recorded order, one bandit across the recorded distortions — what
    the live run learned from (but for its rewards' delay) — in one setting named
    :data:`AS_RECORDED`.
    """
    from splitee.distortions import Distortion
    from splitee.evaluate.outputs import exit_outputs
    from splitee.evaluate.runner import EvalConfig, SettingOutputs, run_evaluation
    from splitee.files import checkpoint_metadata, sha256_file
    from splitee.models import load_checkpoint

    methods = bandit_methods(policies)
    if seeds < 1:
        raise ValueError("--seeds must be at least 1")
    model_path = Path(model_path or s.model.checkpoint)
    if as_recorded:
        seeds = 1  # one order, the recording's
    meta = checkpoint_metadata(model_path)
    if "backbone" in meta:  # real-size: the workers' arms and prices, its input size
        size = int(meta["input_size"])
        return _offline_real(s, rec, methods, seeds, seed, model_path, size, as_recorded)
    frames = recorded_frames(rec, max_bytes=s.edge.max_frame_bytes)
    groups = frames.groups(as_recorded)
    p = s.policy
    cfg = EvalConfig.from_settings(
        s, runs=seeds, seed=p.seed if seed is None else seed, distortions=list(groups)
    )
    model = load_checkpoint(model_path)
    digest = sha256_file(model_path)
    summaries = []
    for name, idx in groups.items():
        # The recorded pixels already carry the distortion: run them through as they are.
        out = exit_outputs(
            model, frames.images[idx], Distortion(), cfg.seed, s.data.cache_dir, digest
        )
        so = SettingOutputs(setting_distortion(name), out, frames.labels[idx], name=name)
        orders = stream_orders(as_recorded, len(idx))
        summaries.append(run_evaluation([so], model.exit_depths, cfg, methods, orders=orders))
    summary = merge_summaries(summaries)
    summary["model"] = {
        "checkpoint": str(model_path),
        "sha256": digest,
        "arch": model.arch,
        "exit_depths": model.exit_depths,
        "frames": len(frames.labels),
        "data": f"recording {rec.path}",
    }
    summary["recording"] = _recording_block(rec, frames, methods, as_recorded)
    return summary


def _offline_real(
    s: Settings,
    rec: Recording,
    methods: list[str],
    seeds: int,
    seed: int | None,
    path: Path,
    size: int,
    as_recorded: bool,
) -> dict:
    """:func:`offline_ab` for a real-size backbone: frames fitted to ``size`` as the edge fits
    them, the workers' own arms, α and prices (the send-frame arm at each frame's recorded JPEG
    size), the cloud's answers after the bottleneck (``model.bottleneck``) — so a live run and
    this replay of its own recording can be compared frame for frame."""
    from dataclasses import replace

    from splitee.evaluate.recorded import RecordedWorkers
    from splitee.evaluate.runner import EvalConfig, run_evaluation

    frames = recorded_frames(rec, size, s.edge.max_aspect, s.edge.max_frame_bytes)
    groups = frames.groups(as_recorded)
    workers = RecordedWorkers(s, path)
    cm = workers.cost_model
    cfg = EvalConfig.from_settings(
        s, path, runs=seeds, seed=s.policy.seed if seed is None else seed, distortions=list(groups)
    )
    cfg = replace(cfg, alpha=cm.alpha)
    summaries = []
    for name, idx in groups.items():
        so = workers.outputs(
            name,
            setting_distortion(name),
            frames.images[idx],
            frames.jpeg_bytes[idx],
            frames.labels[idx],
            cfg.seed,
            s.data.cache_dir,
        )
        orders = stream_orders(as_recorded, len(idx))
        summaries.append(
            run_evaluation([so], list(cm.depths), cfg, methods, workers.cost_args, orders)
        )
    summary = merge_summaries(summaries)
    summary["model"] = {
        "checkpoint": str(path),
        "sha256": workers.digest,
        "bottleneck": None if workers.codec is None else str(s.model.bottleneck),
        "send_frame_arm": workers.send,
        "offload_cost_mode": s.policy.offload_cost_mode,
        "depths": list(cm.depths),
        "frames": len(frames.labels),
        "jpeg_bytes_mean": round(float(frames.jpeg_bytes.mean()), 1),
        "data": f"recording {rec.path}",
    }
    summary["recording"] = _recording_block(rec, frames, methods, as_recorded)
    return summary


def _recording_block(
    rec: Recording, frames: RecordedFrames, methods: list[str], as_recorded: bool
) -> dict:
    """What the summary says about the recording it was computed from (``groups``: frames
    per recorded distortion, however they were replayed)."""
    groups = frames.groups()
    return {
        "path": str(rec.path),
        "complete": rec.manifest.complete,
        "seconds": round(rec.manifest.seconds, 3),
        "frames": len(frames.labels),
        "groups": {d: len(ix) for d, ix in groups.items()},
        "dropped": frames.dropped,
        "warnings": rec.warnings,
        "policies": methods,
        "as_recorded": as_recorded,
    }


def merge_summaries(parts: list[dict]) -> dict:
    """One summary from per-group ones (each group has its own frame count, so its own run)."""
    first = parts[0]
    out = {
        "settings": first["settings"],
        "results": [r for p in parts for r in p["results"]],
        "_curves": {k: v for p in parts for k, v in p["_curves"].items()},
        "_arm_use": {k: v for p in parts for k, v in p["_arm_use"].items()},
    }
    steps = sum(p["replay"]["policy_steps"] for p in parts)
    secs = sum(p["replay"]["seconds"] for p in parts)
    out["replay"] = {
        "policy_steps": steps,
        "seconds": round(secs, 3),
        "steps_per_second": round(steps / secs) if secs else None,
    }
    return out
