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
from tests.conftest import CHECKPOINT, SAMPLE
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
