"""The numbers bench/uplink.py reports, from what it reads: tc's byte counter, consumer lag,
and the link-change experiment's settling frames and regret per phase."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from splitee.evaluate import uplink as U
from tests.conftest import REPO

TC = """qdisc tbf 8001: root refcnt 2 rate 2Mbit burst 32Kb lat 200ms
 Sent 1873344 bytes 1391 pkt (dropped 7, overlimits 2210 requeues 0)
 backlog 0b 0p requeues 0
"""


def test_tc_counters_are_read_from_the_root_qdisc() -> None:
    assert U.qdisc_counters(TC) == {"bytes": 1873344, "packets": 1391, "dropped": 7}
    with pytest.raises(ValueError, match="Sent"):
        U.qdisc_counters("qdisc noqueue 0: dev lo root refcnt 2")


def test_lag_that_grows_is_told_from_lag_that_stays_flat() -> None:
    flat = [(t * 0.5, 30.0 + (t % 3)) for t in range(40)]  # one batch in flight, jitter
    growing = [(t * 0.5, 4.0 * t * 0.5) for t in range(40)]  # 4 frames/s behind
    assert abs(U.lag_slope(flat)) < 0.5
    assert U.lag_slope(growing) == pytest.approx(4.0)
    assert U.keeps_up(U.lag_slope(flat), offered_fps=20, batch=32, final_lag=31)
    assert not U.keeps_up(U.lag_slope(growing), offered_fps=20, batch=32, final_lag=80)
    assert U.lag_slope([]) == 0.0


def test_link_change_summary_finds_each_phases_best_arm_and_the_frames_to_settle() -> None:
    """A policy that sends the JPEG (arm 0) on the fast link, moves to a latent (arm 2) 60
    frames after the link slows, and comes back 40 frames after it recovers."""
    rng = np.random.default_rng(0)
    n = 300
    ts = np.arange(3 * n, dtype=float)
    changes = [float(n), float(2 * n)]
    arms = np.zeros(3 * n, dtype=np.int64)
    arms[n + 60 : 2 * n + 40] = 2
    fast = {0: 0.8, 2: 0.6}  # mean reward of each arm on each link
    slow = {0: -1.5, 2: 0.55}
    mean = np.array(
        [(slow if n <= t < 2 * n else fast)[int(a)] for t, a in zip(ts, arms, strict=True)]
    )
    rew = mean + rng.normal(0, 0.01, len(ts))
    out = U.link_change_summary(ts, arms, rew, changes, [10, 2, 10])
    assert [p["best_arm"] for p in out] == [1, 3, 1]  # 1-based, as in the tables
    assert out[0]["settle_frames"] == 0
    assert out[1]["settle_frames"] == pytest.approx(60, abs=25)
    assert out[2]["settle_frames"] == pytest.approx(40, abs=25)
    # the slow phase's regret is the 60 frames of JPEG at −1.5 against 0.55
    assert out[1]["regret"] == pytest.approx(60 * 2.05, rel=0.05)
    assert out[0]["regret"] == pytest.approx(0.0, abs=1.0)
    assert out[1]["arms"] == {"1": 60, "3": 240}
    # it left the JPEG when it settled on the latent; the first phase has nothing to leave
    assert out[1]["leave_frames"] == out[1]["settle_frames"] and "leave_frames" not in out[0]


def test_leaving_the_old_best_arm_is_counted_apart_from_settling_on_the_new_one() -> None:
    """A policy that drops the JPEG at once after the link slows but shares its pulls between
    two latents of nearly equal reward: it never settles by the 80 % rule, yet it left the JPEG
    40 frames after the change."""
    n = 300
    ts = np.arange(2 * n, dtype=float)
    arms = np.zeros(2 * n, dtype=np.int64)
    arms[n + 40 :] = np.where(np.arange(n - 40) % 2 == 0, 2, 3)
    mean = np.where(ts < n, 0.8, np.select([arms == 0, arms == 2], [-1.5, 0.56], 0.55))
    out = U.link_change_summary(ts, arms, mean, [float(n)], [10, 2])
    assert out[1]["best_arm"] == 3 and out[1]["settle_frames"] is None
    assert out[1]["arm_means"] == {"1": -1.5, "3": 0.56, "4": 0.55}
    assert out[1]["leave_frames"] == 20  # the first 100 from there hold 20 JPEGs: a fifth


def test_the_figures_are_drawn(tmp_path) -> None:
    ts = np.arange(200, dtype=float)
    trace = {"ts": ts.tolist(), "arms": ([0] * 100 + [2] * 100), "changes": [70.0, 140.0],
             "rates": [10, 2, 10], "start": 0.0}  # fmt: skip
    measured = {**trace, "measured": [[t, 10e6 if t < 70 else 2e6] for t in range(0, 200, 5)]}
    U.plot_link_change({"ducb": trace, "swucb": measured}, tmp_path / "lc.png")
    rows = [
        {"policy": p, "mbit": m, "p50_ms": 100, "p99_ms": 400, "uplink_bytes_per_frame": 9e3}
        for p in ("a", "c")
        for m in (2, 10)
    ]
    U.plot_comparison(rows, tmp_path / "cmp.png")
    for name in ("lc.png", "cmp.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_the_benchmark_explains_itself_and_refuses_bad_policies() -> None:
    run = [sys.executable, str(REPO / "bench" / "uplink.py")]
    out = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--link-change" in out.stdout
    bad = subprocess.run([*run, "--policies", "a,z"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown policies" in bad.stderr
