"""Faults on the 3-broker two-site topology (deploy/cluster.toml on deploy/hosts.sh's network
namespaces), mid-stream, each its own test: a broker that leads partitions killed with -9 and
restarted; a broker's cable pulled for 20 s; Redis's primary killed with -9 (Sentinel promotes
the replica), then restarted, and a restart of every Redis server keeping the statistics (AOF).

One deployment for the module, started by ``deploy/up.sh --config deploy/cluster.toml`` in a
private var dir, exactly as a user starts one. Cameras run on the edge site
(``deploy/hosts.sh exec edge splitee produce``); results are read through ``ResultsView`` on
the core host (tests/servers/cluster_client.py), since the topology's addresses exist only in
its namespaces. Every test ends with every frame exactly one result, no worker restarted (by
hand or by the supervisor), and the policy's frame count within one edge batch per fault of
a run without the fault. Each prints frames sent, results, duplicates dropped, missing and the
stall (the longest time without a result from the fault on; ``pytest -s``).

Needs root (network namespaces) and iproute2; ``pytest -m cluster`` runs these alone. Without
root they are skipped; with ``SPLITEE_REQUIRE_CLUSTER=1`` (``.ci/run`` sets it when it runs as
root) a missing prerequisite fails instead, so CI cannot skip the tier silently.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

MISSING = os.geteuid() != 0 or shutil.which("ip") is None
if MISSING and os.environ.get("SPLITEE_REQUIRE_CLUSTER") == "1":
    raise RuntimeError("SPLITEE_REQUIRE_CLUSTER=1, but deploy/hosts.sh needs root and iproute2")
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(MISSING, reason="deploy/hosts.sh needs root and iproute2"),
]

DEPLOY = REPO / "deploy"
PYTHON = str(REPO / ".venv" / "bin" / "python")
SPLITEE = str(REPO / ".venv" / "bin" / "splitee")
PER_CAMERA = 400  # 2 cameras: 800 frames per run
FPS = 20.0  # per camera: a 20 s stream
BATCH = 32  # edge.batch_size: the tolerance of the policy's frame count, per fault
WORKERS = ("edge-1", "edge-2", "cloud-1", "evaluator", "exporter")


@dataclass
class Cluster:
    env: dict[str, str]
    var: Path

    def sh(self, *args: str, timeout: float = 300) -> str:
        out = subprocess.run(
            ["bash", *args], env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout
        )
        assert out.returncode == 0, f"{args} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
        return out.stdout

    def on(self, host: str, *cmd: str, timeout: float = 300) -> str:
        """CMD on a host of the topology, with its client settings (deploy/hosts.sh exec)."""
        return self.sh(str(DEPLOY / "hosts.sh"), "exec", host, *cmd, timeout=timeout)

    def pid(self, name: str) -> int:
        return int((self.var / "run" / f"{name}.pid").read_text())

    def workers(self) -> dict[str, int]:
        """Each worker's own pid (changes when its supervisor restarts it)."""
        return {w: self.pid(f"child/{w}") for w in WORKERS}

    def restarts(self) -> dict[str, int]:
        run = self.var / "run"
        return {
            w: (run / f"{w}.restarts").read_text().count(" restart: ")
            if (run / f"{w}.restarts").exists()
            else 0
            for w in WORKERS
        }

    def policy_frames(self) -> float:
        """Frames counted in the policy statistics in Redis (t, summed over policies)."""
        snap = json.loads(self.on("core", SPLITEE, "policy", "show", "--json"))
        return sum(p["t"] for p in snap.values())

    def stream(self, fault: Callable[[], None] | None) -> dict:
        """Stream PER_CAMERA frames from each camera on the edge site, call ``fault()`` 4 s in,
        read every result; the run's report (also printed)."""
        run = f"c-{uuid.uuid4().hex[:6]}"
        before_t, before_pids = self.policy_frames(), self.workers()
        cmd = [str(DEPLOY / "hosts.sh"), "exec", "edge", SPLITEE, "produce"]
        cams = subprocess.Popen(
            ["bash", *cmd, "--count", str(PER_CAMERA), "--fps", str(FPS), "--run-id", run],
            env=self.env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(4.0)
        t_fault = time.time()
        if fault is not None:
            fault()
        out, err = cams.communicate(timeout=600)
        assert cams.returncode == 0, f"cameras failed (frames dropped?):\n{out}\n{err[-3000:]}"
        got = json.loads(
            self.on("core", PYTHON, "-m", "tests.servers.cluster_client", "results", run, "240")
        )
        time.sleep(2.0)  # the last batches' statistics reach Redis after their results
        frames, done = set(got["frames"]), got["done_ts"]
        ts = sorted(t for t in done.values() if t >= t_fault - 1)
        stall = max((b - a for a, b in itertools.pairwise([t_fault, *ts])), default=0.0)
        report = {
            "frames_sent": len(frames),
            "results": len(done),
            "duplicates_dropped": got["duplicates"],
            "missing": len(frames - set(done)),
            "stall_s": round(stall, 1),
            "policy_frames": self.policy_frames() - before_t,
            "workers_same": self.workers() == before_pids,
        }
        return report


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    var = tmp_path_factory.mktemp("cluster")
    env = dict(os.environ)
    env.update(
        {
            "SPLITEE_VAR_DIR": str(var),
            "SPLITEE_CONFIG": str(DEPLOY / "cluster.toml"),
            "SPLITEE_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    c = Cluster(env, var)
    try:
        c.sh(str(DEPLOY / "up.sh"), "--no-producers", timeout=600)
        yield c
    finally:
        subprocess.run(["bash", str(DEPLOY / "down.sh")], env=env, timeout=300)


@pytest.fixture(scope="module")
def baseline(cluster) -> dict:
    """A run without a fault: what every frame count and stall is compared with."""
    report = cluster.stream(None)
    print(json.dumps({"fault": "none (baseline)", **report}))
    assert report["missing"] == 0 and report["results"] == report["frames_sent"]
    return report


def check(cluster: Cluster, base: dict, report: dict, fault: str, faults: int = 1) -> None:
    print(json.dumps({"fault": fault, **report, "baseline_stall_s": base["stall_s"]}))
    assert report["frames_sent"] == base["frames_sent"]
    assert report["missing"] == 0, f"{report['missing']} frames without a result"
    assert report["results"] == report["frames_sent"]
    assert report["workers_same"], "a worker was restarted"
    assert cluster.restarts() == dict.fromkeys(WORKERS, 0)
    assert abs(report["policy_frames"] - base["policy_frames"]) <= BATCH * faults


def test_a_broker_that_leads_partitions_killed_and_restarted(cluster, baseline):
    frames_topic = "frames"  # deploy/cluster.toml keeps the default topic names
    leaders = json.loads(
        cluster.on("core", PYTHON, "-m", "tests.servers.cluster_client", "leaders", frames_topic)
    )
    broker, led = Counter(leaders.values()).most_common(1)[0]
    assert led >= 1

    def fault() -> None:
        os.kill(cluster.pid(f"kafka-{broker}"), signal.SIGKILL)
        time.sleep(5.0)
        cluster.sh(str(DEPLOY / "kafka-start.sh"), timeout=180)

    report = cluster.stream(fault)
    check(
        cluster, baseline, report, f"kill -9 kafka-{broker} (leader of {led} partitions), restart"
    )


def test_a_broker_cut_off_for_20s(cluster, baseline):
    leaders = json.loads(
        cluster.on("core", PYTHON, "-m", "tests.servers.cluster_client", "leaders", "offload")
    )
    broker = Counter(leaders.values()).most_common(1)[0][0]

    def fault() -> None:
        cluster.sh(str(DEPLOY / "hosts.sh"), "link", f"kafka{broker}", "down")
        time.sleep(20.0)
        cluster.sh(str(DEPLOY / "hosts.sh"), "link", f"kafka{broker}", "up")

    report = cluster.stream(fault)
    check(cluster, baseline, report, f"kafka{broker} link down for 20 s")


def _primary(cluster: Cluster) -> str:
    """The Redis server the Sentinels call primary (redis or redis-2)."""
    out = cluster.on(
        "core", "redis-cli", "-h", "127.0.0.1", "-p", "26379",
        "sentinel", "get-master-addr-by-name", "splitee",
    )  # fmt: skip
    ip = out.split()[0]
    return "redis" if ip.endswith(".21") else "redis-2"


def test_redis_primary_killed_the_replica_takes_over_and_aof_keeps_the_statistics(
    cluster, baseline
):
    old = _primary(cluster)

    def fault() -> None:
        os.kill(cluster.pid(old), signal.SIGKILL)
        time.sleep(10.0)  # Sentinel promotes the replica meanwhile
        cluster.sh(str(DEPLOY / "redis-start.sh"), timeout=120)  # back, as a replica

    report = cluster.stream(fault)
    check(cluster, baseline, report, f"kill -9 the Redis primary ({old}), restart it")
    assert _primary(cluster) != old, "the replica was not promoted"

    # A restart keeps the statistics: every Redis server killed -9 and started again (AOF,
    # fsync every second: wait that long after the last write).
    before = cluster.on("core", SPLITEE, "policy", "show", "--json")
    time.sleep(2.0)
    for name in ("redis", "redis-2"):
        os.kill(cluster.pid(name), signal.SIGKILL)
    time.sleep(1.0)
    cluster.sh(str(DEPLOY / "redis-start.sh"), timeout=120)
    deadline = time.monotonic() + 60
    while True:
        try:
            after = cluster.on("core", SPLITEE, "policy", "show", "--json", timeout=60)
            if json.loads(after) == json.loads(before) or time.monotonic() > deadline:
                break
        except AssertionError:  # Sentinel still settling on a primary
            if time.monotonic() > deadline:
                raise
        time.sleep(2.0)
    assert json.loads(after) == json.loads(before)
    print(json.dumps({"fault": "every Redis server kill -9, restart", "statistics_kept": True}))
