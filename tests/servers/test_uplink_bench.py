"""bench/uplink.py --quick end to end: its own two-site topology with a shaped uplink, two
policies through real workers, one JSON line — and nothing left behind (namespaces, bridge).

Only the mechanics are checked (every frame answered, the kernel's byte counter moved, the
cloud-only policy sent about a JPEG per frame); the numbers themselves come from the real runs
(docs/uplink/). Needs root and iproute2, like the cluster tier; ~3 min on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

MISSING = os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None
pytestmark = [  # servers and slow come with the tier (tests/conftest.py)
    pytest.mark.cluster,
    pytest.mark.skipif(MISSING, reason="bench/uplink.py needs root, ip and tc"),
]


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_quick_uplink_bench_runs_two_policies_and_removes_its_topology(tmp_path):
    before = _namespaces()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SPLITEE_VAR_DIR", None)  # the bench makes its own
    cmd = [sys.executable, str(REPO / "bench" / "uplink.py"), "--quick", "--net", "10.81.0"]
    out = subprocess.run(
        [*cmd, "--policies", "a,c", "--out", str(tmp_path)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["bench"] == "uplink" and report["machine"]["cpu"]
    rows = {r["policy"]: r for r in report["results"]}
    assert set(rows) == {"a", "c"}
    for r in rows.values():
        assert r["missing"] == 0 and r["frames"] == 24
        assert r["uplink_bytes"] > 0 and r["sweep"]
        assert r["p50_ms"] is not None and r["p99_ms"] >= r["p50_ms"]
    a, c = rows["a"], rows["c"]
    assert a["offload_fraction"] == 1.0 and a["arms"] == {"1": 24}
    # the learning policy: measured fresh, then again after a warm-up of other frames
    assert "cold" not in a and c["warmup_frames"] == 24
    assert c["cold"]["frames"] == 24 and c["cold"]["missing"] == 0
    # the kernel counted at least the JPEGs (plus headers, results, policy reads, protocol)
    assert a["uplink_bytes_per_frame"] >= a["jpeg_bytes_per_frame"]
    assert (tmp_path / "uplink.json").is_file() and (tmp_path / "uplink.png").is_file()
    assert _namespaces() <= before, "the bench left network namespaces behind"
