"""The offline A/B (``splitee replay --offline``) on recordings, with the shipped model: the same
numbers as ``splitee evaluate`` on the same frames, grouped by recorded distortion, repeatable."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from producers.camera import Frame
from splitee.cli import main
from splitee.data import iter_zip_frames
from tests.conftest import CHECKPOINT, REPO, SAMPLE
from tests.recordings import camera_recording


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    return [Frame(b, y, i) for i, (_, b, y) in enumerate(iter_zip_frames(SAMPLE))]


def cli(*args, cache):
    res = CliRunner().invoke(main, list(args), env={"SPLITEE_DATA__CACHE_DIR": str(cache)})
    assert res.exit_code == 0, res.output
    return res


def rows(out):
    s = json.loads((out / "summary.json").read_text())
    return {(r["distortion"], r["method"]): r for r in s["results"]}, s


def test_offline_ab_matches_evaluate_on_the_same_frames(tmp_path, frames):
    """One camera, fixed order, clean frames = the 300 sample frames `evaluate --limit 300`
    reads (a seeded random subset, in file order); the offline A/B must give the evaluator's
    numbers exactly, and repeat them."""
    rec = tmp_path / "rec"
    pick = np.sort(np.random.default_rng(0).permutation(len(frames))[:300])
    camera_recording(rec, [frames[i] for i in pick], 300)
    cache = tmp_path / "cache"
    offline = ["replay", str(rec), "--offline", "--policies", "isplitee,ucb1,isplitee-full"]
    offline += ["--seeds", "3", "--model", str(CHECKPOINT), "--out", str(tmp_path / "a")]
    cli(*offline, cache=cache)
    evaluate = ["evaluate", "--model", str(CHECKPOINT), "--data", str(SAMPLE), "--limit", "300"]
    evaluate += ["--runs", "3", "--distortions", "pristine", "--out", str(tmp_path / "e")]
    cli(*evaluate, cache=cache)
    a, sa = rows(tmp_path / "a")
    e, _ = rows(tmp_path / "e")
    assert sa["recording"]["frames"] == 300 and sa["recording"]["groups"] == {"pristine": 300}
    assert a[("pristine", "isplitee-online")] == e[("pristine", "isplitee-online")]
    assert a == e  # every method, every number
    for f in ("table.md", "regret.png", "accuracy_cost.png"):
        assert (tmp_path / "a" / f).stat().st_size > 0


def test_offline_ab_groups_by_recorded_distortion_and_is_deterministic(tmp_path, frames):
    rec = tmp_path / "rec"
    sched = ("pristine@120f", "noise:0.1@120f", "blur:1.0")
    camera_recording(rec, frames, 360, schedule=sched, order="random")
    cache = tmp_path / "cache"
    args = ["replay", str(rec), "--offline", "--policies", "isplitee,ucb1", "--seeds", "4"]
    args += ["--model", str(CHECKPOINT)]
    cli(*args, "--out", str(tmp_path / "a"), cache=cache)
    cli(*args, "--out", str(tmp_path / "b"), cache=cache)
    cli(*args, "--seed", "7", "--out", str(tmp_path / "c"), cache=cache)
    a, sa = rows(tmp_path / "a")
    b, _ = rows(tmp_path / "b")
    c, _ = rows(tmp_path / "c")
    assert sa["recording"]["groups"] == {"pristine": 120, "noise:0.1": 120, "blur:1": 120}
    assert a == b
    methods = {m for _, m in a}
    assert {"isplitee-online", "splitee-ucb1", "best-fixed"} <= methods
    assert "isplitee-full" not in methods
    key = ("noise:0.1", "isplitee-online")
    assert a[key]["runs"] == 4
    assert [a[k] for k in a if k[1] == "isplitee-online"] != [c[k] for k in c if k[1] == key[1]]


def test_a_real_size_recording_replays_as_the_workers_price_and_answer_it(tmp_path):
    """Caltech-101 frames at their own sizes (the demo's stream): fitted as the edge fits
    them, the workers' arms and α, the send-frame arm carrying each frame's recorded JPEG (a
    noisy frame re-encoded by the camera, not the stored file), the cloud answering after the
    bottleneck — the offline figure a live run of the same stream is compared with."""
    from policy_store.rewards import CostModel
    from splitee import policy_setup
    from splitee.images import open_source
    from splitee.models import load_checkpoint
    from splitee.recording import open_recording
    from splitee.replay import recorded_frames
    from splitee.settings import load_settings

    caltech = REPO / "assets" / "caltech101-sample.zip"
    model = REPO / "assets" / "efficientnet-lite0-caltech101.safetensors"
    bottleneck = REPO / "assets" / "efficientnet-lite0-caltech101-bottleneck.safetensors"
    src = open_source(caltech, "test")  # as producer.source = "images" reads them
    cams = [Frame(b, y, i) for i, (_, b, y) in enumerate(src.iter_bytes())][:40]
    rec = tmp_path / "rec"
    camera_recording(rec, cams, 40, schedule=("pristine@20f", "noise:0.1"))
    env = {
        "SPLITEE_DATA__CACHE_DIR": str(tmp_path / "cache"),
        "SPLITEE_MODEL__CHECKPOINT": str(model),
        "SPLITEE_MODEL__BOTTLENECK": str(bottleneck),
        "SPLITEE_POLICY__OFFLOAD_COST_MODE": "bytes",
        "SPLITEE_POLICY__JPEG_BYTES": "12844",
    }
    args = ["replay", str(rec), "--offline", "--seeds", "2", "--out", str(tmp_path / "a")]
    res = CliRunner().invoke(main, args, env=env)
    assert res.exit_code == 0, res.output
    a, s = rows(tmp_path / "a")
    assert s["recording"]["groups"] == {"pristine": 20, "noise:0.1": 20}
    assert s["model"]["send_frame_arm"] and s["model"]["bottleneck"] == str(bottleneck)
    # the workers' own cost model: arm 0 + the model's 6 exits, the model's α
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        settings = load_settings(None)
    _, cm = policy_setup.model_and_costs(settings, load_checkpoint(model))
    assert s["model"]["depths"] == list(cm.depths) and s["settings"]["alpha"] == cm.alpha == 0.7
    # arm 0 carries the recorded JPEG: pristine frames as stored, noisy ones re-encoded
    sent = recorded_frames(open_recording(rec), fit=224).jpeg_bytes
    stored = [len(f.jpeg) for f in cams[:20]]
    assert sent[:20].tolist() == stored and sent[20:].tolist() != [len(f.jpeg) for f in cams[20:]]
    for group, ix in (("pristine", slice(0, 20)), ("noise:0.1", slice(20, 40))):
        cloud = a[(group, "cloud-only")]
        assert cloud["offload_bytes"] == round(sent[ix].mean())
        o = CostModel((0, 1), bytes_ref=12844).offload_cost * sent[ix].mean() / 12844
        assert cloud["cost"] == pytest.approx(o, abs=1e-6)
        # arm 1 (the bottleneck after exit 1) sends coded latents, a fraction of the JPEG
        fixed = a[(group, "fixed-2")]
        assert 0 < fixed["offload_bytes"] < cloud["offload_bytes"] / 3


def test_as_recorded_replays_one_stream_in_the_recorded_order(tmp_path, frames):
    """--as-recorded: every frame in the recording's own order, one bandit across its
    distortion changes (what a live run learned from); fixed arms score as the groups do."""
    rec = tmp_path / "rec"
    camera_recording(rec, frames, 240, schedule=("pristine@120f", "noise:0.1"), order="random")
    cache = tmp_path / "cache"
    base = ["replay", str(rec), "--offline", "--policies", "isplitee", "--model", str(CHECKPOINT)]
    cli(*base, "--as-recorded", "--out", str(tmp_path / "a"), cache=cache)
    cli(*base, "--as-recorded", "--seeds", "5", "--out", str(tmp_path / "b"), cache=cache)
    cli(*base, "--seeds", "2", "--out", str(tmp_path / "g"), cache=cache)
    a, sa = rows(tmp_path / "a")
    b, _ = rows(tmp_path / "b")
    g, _ = rows(tmp_path / "g")
    assert sa["recording"]["groups"] == {"pristine": 120, "noise:0.1": 120}
    assert sa["recording"]["as_recorded"] and {d for d, _ in a} == {"as-recorded"}
    assert a == b  # one order, the recording's: --seeds changes nothing
    assert a[("as-recorded", "isplitee-online")]["runs"] == 1
    for k in range(1, 4):  # a fixed arm does not learn: the stream's mean of the groups'
        whole = a[("as-recorded", f"fixed-{k}")]["accuracy"]
        parts = [g[(d, f"fixed-{k}")]["accuracy"] for d in ("pristine", "noise:0.1")]
        assert whole == pytest.approx(sum(parts) / 2, abs=1e-6)
    res = CliRunner().invoke(main, ["replay", str(rec), "--as-recorded"])
    assert res.exit_code != 0 and "--as-recorded is for --offline" in res.output


def test_recorded_frames_drop_what_the_edge_would_refuse(tmp_path, frames):
    """Frames over the edge's max_frame_bytes are counted as oversized, never decoded; the
    others keep their recorded JPEG sizes, in recorded order."""
    from splitee.recording import open_recording
    from splitee.replay import recorded_frames

    rec = tmp_path / "rec"
    camera_recording(rec, frames[:30], 30)
    sizes = [len(f.jpeg) for f in frames[:30]]
    limit = sorted(sizes)[20]  # ten frames are larger
    got = recorded_frames(open_recording(rec), max_bytes=limit)
    assert got.dropped["oversized"] == sum(n > limit for n in sizes) > 0
    assert got.jpeg_bytes.tolist() == [n for n in sizes if n <= limit]
    whole = recorded_frames(open_recording(rec))
    assert whole.dropped["oversized"] == 0 and len(whole.labels) == 30
