"""Sampling profiles of the edge and cloud workers draining a backlog (py-spy), for docs/perf/.

One edge worker (policy ``fixed:1`` unless told otherwise) joins its group, then cameras send
frames as fast as they can while ``py-spy record`` (--idle, so waits show up too, --threads)
samples the worker; then a cloud worker drains the offloads the same way. Writes
``<out>/{edge,cloud}.speedscope.json`` (open them in https://www.speedscope.app or any
speedscope viewer) and prints one JSON line: per worker and thread, the share of samples spent
under the functions that matter most (inclusive).

Usage: .venv/bin/python bench/profile_workers.py [--frames 3000] [--policy fixed:1] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from producers.camera import Frame
from splitee.data import iter_zip_frames
from splitee.kafka_io import wait_groups
from splitee.machine import machine_description
from splitee.results import collect_results
from splitee.testing import REPO, Pipeline

PY_SPY = Path(sys.executable).parent / "py-spy"


def attach(pid: int, role: str, out: Path, seconds: int, rate: int) -> None:
    """py-spy on a running worker for ``seconds``, writing a speedscope profile."""
    cmd = [
        str(PY_SPY), "record", "--idle", "--threads", "-r", str(rate), "-d", str(seconds),
        "-f", "speedscope", "-o", str(out / f"{role}.speedscope.json"), "--pid", str(pid),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def summarize(path: Path, top: int = 12) -> dict[str, dict[str, float]]:
    """Per thread: the share of samples under each of the ``top`` heaviest functions."""
    doc = json.loads(path.read_text())
    names = [f"{f['name']} ({Path(f.get('file', '?')).name}:{f.get('line', 0)})"
             for f in doc["shared"]["frames"]]  # fmt: skip
    out = {}
    for prof in doc["profiles"]:
        total = sum(prof["weights"]) or 1
        incl: dict[int, float] = {}
        for stack, w in zip(prof["samples"], prof["weights"], strict=True):
            for f in set(stack):
                incl[f] = incl.get(f, 0.0) + w
        best = sorted(incl.items(), key=lambda kv: -kv[1])[:top]
        out[prof["name"]] = {names[f]: round(w / total, 3) for f, w in best}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--policy", default="fixed:1")
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "perf")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["bash", str(REPO / "deploy" / "servers-up.sh")], check=True)
    frames = [
        Frame(b, y, i)
        for i, (_, b, y) in enumerate(iter_zip_frames(REPO / "assets" / "cifar10-sample.zip"))
    ]
    with tempfile.TemporaryDirectory() as d:
        p = Pipeline.create(Path(d), SPLITEE_POLICY__NAME=args.policy)
        k = p.settings.kafka
        run = f"prof-{int(time.time())}"
        try:
            # the edge joins its group first, so the profile holds work, not start-up
            p.start("edge", "edge-prof")
            wait_groups(k, {f"{k.group_prefix}-edge": 1}, 240)
            sent: list = []
            n = args.frames // 2
            sender = threading.Thread(target=lambda: sent.extend(p.stream(frames, n, 0.0, run)))
            sender.start()
            attach(p.procs["edge-prof"].pid, "edge", args.out, args.seconds, args.rate)
            sender.join()
            p.start("cloud", "cloud-prof")  # the offloads are its backlog
            wait_groups(k, {f"{k.group_prefix}-cloud": 1}, 240)
            attach(p.procs["cloud-prof"].pid, "cloud", args.out, args.seconds, args.rate)
            ids = {f.meta.frame_id for f in sent}
            view = collect_results(k, ids, 120, run)
        finally:  # no worker outlives the benchmark, also when py-spy fails
            p.stop()
    print(
        json.dumps(
            {
                "bench": "profile_workers",
                "machine": machine_description()["cpu"],
                "frames": len(sent),
                "answered_while_profiled": len(view.results),
                "profiled_seconds": args.seconds,
                "top": {r: summarize(args.out / f"{r}.speedscope.json") for r in ("edge", "cloud")},
            }
        )
    )


if __name__ == "__main__":
    main()
