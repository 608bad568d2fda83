"""Start and stop a real pipeline (workers as subprocesses) for end-to-end tests and benchmarks.

Used by tests/servers and bench/pipeline.py from a source checkout (workers run with the repo as
their cwd). Servers come from the deploy scripts; each harness uses its own topics, consumer
groups and Redis namespace, so runs never see each other's records.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splitee.settings import CameraSettings, Settings

REPO = Path(__file__).resolve().parent.parent
SPLITEE = [sys.executable, "-m", "splitee.cli"]


def run_checked(cmd: list[str], env: dict[str, str], timeout: float, what: str = "") -> str:
    """Run ``cmd`` from the checkout and return its stdout; a non-zero exit raises with the
    tails of its output (what a failing deploy script or CLI call said is the test's message)."""
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if out.returncode:
        name = what or " ".join(cmd)
        raise RuntimeError(f"{name} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return out.stdout


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick for port 0 on 127.0.0.1), so servers
    and metrics endpoints started for a test never collide with a running deployment."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: every socket stays bound until all are drawn, since the
    kernel may hand a just-closed port back at once (two ``free_port()`` calls once gave a
    Kafka broker the same port for its client and controller listeners)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def free_port_block(count: int) -> int:
    """A base port such that base+1 .. base+count are all free now, for deploy/up.sh's
    `metrics_port_base` (worker i serves on base+i).

    Drawn below the kernel's ephemeral range, where `free_port` (and so every server a test
    starts) never lands: a block that starts at a kernel pick can run into a port that a server
    took a moment earlier, which once left an edge worker unable to serve its metrics.
    """
    low_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.randrange(10_000, low_ephemeral - count - 1)
        if all(_bindable(base + i) for i in range(1, count + 1)):
            return base
    raise RuntimeError(f"no block of {count} free ports below {low_ephemeral}")


def settled_stats(store: Any, key: str, since_t: float, expect: int, timeout_s: float = 30.0):
    """The policy statistics under ``key`` once ``expect`` decisions past ``since_t`` are in.

    A worker applies a batch's policy delta after the broker acknowledged its results
    (at-least-once), so a reader that has every result may still be a moment ahead of the last
    batches' updates. Returns the statistics read at the deadline if they never settle.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        stats = store.read_fresh(key)
        if float(stats.t) - since_t >= expect or time.monotonic() > deadline:
            return stats
        time.sleep(0.2)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Pipeline:
    env: dict[str, str]
    log_dir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    #: the checkout whose code the workers run (another one: before/after benchmarks)
    code: Path = REPO

    @classmethod
    def create(cls, log_dir: Path, **overrides: str) -> Pipeline:
        tag = uuid.uuid4().hex[:8]
        env = dict(os.environ)
        env.update(
            {
                "SPLITEE_KAFKA__FRAMES_TOPIC": f"t{tag}-frames",
                "SPLITEE_KAFKA__TRUTH_TOPIC": f"t{tag}-truth",
                "SPLITEE_KAFKA__OFFLOAD_TOPIC": f"t{tag}-offload",
                "SPLITEE_KAFKA__RESULTS_TOPIC": f"t{tag}-results",
                "SPLITEE_KAFKA__GROUP_PREFIX": f"t{tag}",
                "SPLITEE_KAFKA__PARTITIONS": "4",
                "SPLITEE_REDIS__NAMESPACE": f"t{tag}",
                "SPLITEE_LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(overrides)
        env.pop("SPLITEE_CONFIG", None)
        p = cls(env, log_dir)
        p.cli("topics", "create")
        return p

    @property
    def settings(self) -> Settings:
        old = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update(self.env)
            return Settings()
        finally:
            os.environ.clear()
            os.environ.update(old)

    def cli(self, *args: str, timeout: float = 300) -> str:
        return run_checked([*SPLITEE, *args], self.env, timeout, f"splitee {' '.join(args)}")

    def start(
        self, role: str, name: str, metrics_port: int = 0, *options: str, python: str | None = None
    ) -> None:
        """Start a ``role`` worker named ``name``; ``options`` go to its command line.

        ``python``: the interpreter of another environment with splitee installed (the
        torch-free edge's), run outside the checkout and without PYTHONPATH, so the worker
        runs that environment's own install."""
        log = (self.log_dir / f"{name}.log").open("ab")
        argv = [role, "--worker-id", name, "--metrics-port", str(metrics_port), *options]
        env, cwd = self.env, self.code
        if python is not None:
            env = {k: v for k, v in self.env.items() if k != "PYTHONPATH"}
            cwd = self.log_dir
        self.procs[name] = subprocess.Popen(
            [*SPLITEE, *argv] if python is None else [python, "-m", "splitee.cli", *argv],
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs.pop(name)
        p.send_signal(sig)
        p.wait(30)

    def wait_ready(self, edge: int, cloud: int, timeout: float = 240) -> None:
        """Until both consumer groups are stable with every worker in; fail fast if one dies."""
        from splitee.kafka_io import group_members

        k = self.settings.kafka
        want = {f"{k.group_prefix}-edge": edge, f"{k.group_prefix}-cloud": cloud}
        deadline = time.monotonic() + timeout
        last: dict = {}
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited ({p.returncode}):\n{self.log_tail(name)}")
            try:
                last = group_members(k, list(want))
            except Exception:
                last = {}
            if all(
                last.get(g, ("", 0))[0] == "Stable" and last[g][1] >= n for g, n in want.items()
            ):
                return
            time.sleep(1.0)
        raise TimeoutError(f"workers not ready after {timeout}s: {last}")

    def stop(self) -> None:
        for p in self.procs.values():
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()

    def stream(
        self,
        frames: list,
        per_camera: int,
        fps: float = 0.0,
        run_id: str = "",
        schedules: tuple[list[str], ...] = (["pristine"], ["pristine"]),
    ) -> list:
        """Send from one camera per schedule (threads, seeds 1, 2, …); returns what was sent."""
        from producers.camera import camera_producer, run_cameras
        from producers.fleet import build_cameras

        s = self.settings
        k = s.kafka
        specs = [
            CameraSettings(id=f"cam-{i}", schedule=list(sch), seed=i)
            for i, sch in enumerate(schedules, start=1)
        ]
        # the deployment's own camera construction; fps 0: as fast as the broker takes them
        cams = build_cameras(s, frames, specs, fps=fps, run_id=run_id)
        sent: list = []
        # the product's cameras' producer (reconnects within a second after an outage, is
        # replaced when stuck), so fault tests time the pipeline, not a test-only client
        run_cameras(
            cams, lambda: camera_producer(k), k.frames_topic, k.truth_topic, per_camera,
            sent.append,
        )  # fmt: skip
        return sent

    def log_tail(self, name: str, n: int = 40) -> str:
        path = self.log_dir / f"{name}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""
        )
