"""Benchmark: policies on a bandwidth-limited edge uplink, end to end. One JSON line.

Split computing pays where the edge site's uplink is the bottleneck. This runs the same camera
streams through the same workers on a two-site topology whose edge uplink is shaped by ``tc
tbf`` (deploy/hosts.sh, 2 Kafka brokers), once per policy and link rate:

- the **edge site**: the cameras run beside broker 1 (host ``kafka1``), which leads ``frames``
  and ``truth`` — a broker at the site, so camera JPEGs never cross the uplink — and the edge
  worker runs on host ``edge``, whose egress is the shaped uplink;
- the **data centre**: broker 2 leads ``offload`` and ``results``; the cloud worker (``dc``),
  Redis (through its Sentinels) and the clients that read results (``core``).

Per run: the bytes that left the edge host as the kernel counts them (``tc -s qdisc`` on its
interface, before and after the stream: offloads, exits' results, policy reads and protocol),
capture-to-result p50/p99 and accuracy against the truth records (``splitee/results.py``), the
edge worker's CPU seconds per frame (``/proc``), and the highest camera rate sustained: the
camera rate is stepped up until the consumer lag of ``frames`` (edge) or ``offload`` (cloud)
grows (``splitee/evaluate/uplink.py``; a full uplink shows first as the edge's lag, since the
offloads queue in the edge's producer before they reach the broker).

Policies: ``a`` cloud-only (every frame sent as the camera's JPEG), ``a2`` cloud-only fitted to
224 px and re-encoded at the lowest JPEG quality within 1 point of the original's accuracy
(``edge.frame_quality``; ``--fair-quality`` skips the search), ``b`` I-SplitEE over raw split
tensors (float16), ``c`` I-SplitEE with the bottleneck arms and the JPEG arm; b and c under
``policy.offload_cost_mode = "latency"`` at the run's link rate.

``--link-change``: one stream per policy (D-UCB, SW-UCB with side observations; c's arms,
latency cost with the rate measured live) while ``tc qdisc change`` moves the uplink 10 → 2 →
10 Mbit/s; per change the frames to settle on that phase's best arm and the regret against it,
and ``link_change.png`` (arms over time).

The namespaces and shaping are created and removed here (``deploy/hosts.sh up`` / ``deploy/
down.sh``, under a private var dir and network); traffic stays inside them. Needs root.

Usage: python bench/uplink.py [--quick] [--rates 2,10] [--policies a,a2,b,c] [--out DIR]
       python bench/uplink.py --link-change [--quick] [--change-frames 1500] [--out DIR]
Frames: ``SPLITEE_DATA__IMAGES`` (Caltech-101's zip) or ``--images``; default the shipped sample.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script, from any directory
    sys.path.insert(0, str(REPO))

DEPLOY = REPO / "deploy"
SELF = str(Path(__file__).resolve())
SPLITEE = [sys.executable, "-m", "splitee.cli"]
MODEL = REPO / "assets" / "efficientnet-lite0-caltech101.safetensors"
BOTTLENECK = REPO / "assets" / "efficientnet-lite0-caltech101-bottleneck.safetensors"
JPEG_BYTES = 12844  # median JPEG of the Caltech-101 test split (the model card)
TICK = os.sysconf("SC_CLK_TCK")
LEARNING = ("b", "c", "c1", "c2")  # policies that learn online: measured cold, then warm
CLOUD_METRICS_PORT = 9391  # on the data centre's own address, inside its namespace
POLICIES = {
    "a": "cloud-only: the camera's JPEG",
    "a2": "cloud-only: fitted to 224 px, re-encoded at a low JPEG quality",
    "b": "I-SplitEE over raw split tensors (float16)",
    "c": "I-SplitEE with the bottleneck arms and the JPEG arm",
    "c1": "c with every bottleneck arm at its most accurate rate point",
    "c2": "c learning α with the arm (policy.alpha_grid)",
}
ALPHA_GRID = "[0.7, 0.8, 0.9, 0.95]"  # c2's thresholds (deploy/demo-caltech.toml's)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Topology:
    """deploy/hosts.sh's namespaces (2 brokers, shaped edge uplink) and the servers on them,
    under a private var dir; every command runs on one of its hosts (``hosts.sh exec``)."""

    def __init__(self, var: Path, net: str, images: Path, log: Path) -> None:
        self.var = var
        self.log = log
        self.env = dict(os.environ)
        self.env.update(
            {
                "SPLITEE_VAR_DIR": str(var),
                "SPLITEE_HOSTS_NET": net,
                "SPLITEE_DEPLOY__BROKERS": "2",
                "KAFKA_BROKERS": "2",
                "SPLITEE_KAFKA__PARTITIONS": "2",
                "SPLITEE_MODEL__CHECKPOINT": str(MODEL),
                "SPLITEE_DATA__IMAGES": str(images),
                "SPLITEE_PRODUCER__SOURCE": "images",
                "SPLITEE_LOG_LEVEL": "WARNING",
                "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env.pop("SPLITEE_CONFIG", None)
        self.procs: list[subprocess.Popen] = []
        self.mbit = 0

    def sh(self, *args: str, env: dict | None = None, timeout: float = 600) -> str:
        from splitee.testing import run_checked

        return run_checked(["bash", *args], {**self.env, **(env or {})}, timeout)

    def on(self, host: str, *cmd: str, env: dict | None = None, timeout: float = 600) -> str:
        return self.sh(str(DEPLOY / "hosts.sh"), "exec", host, *cmd, env=env, timeout=timeout)

    def start(self, host: str, name: str, *cmd: str, env: dict | None = None) -> subprocess.Popen:
        """CMD on HOST in the background; its pid is CMD's own (hosts.sh and ip netns exec
        exec it)."""
        out = (self.log / f"{name}.log").open("ab")
        p = subprocess.Popen(
            ["bash", str(DEPLOY / "hosts.sh"), "exec", host, *cmd],
            env={**self.env, **(env or {})},
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(p)
        return p

    def client(self, *args: str, env: dict | None = None, timeout: float = 600) -> dict:
        """This script's client mode on the core host (the topology's addresses exist only in
        its namespaces): the last line it prints, as JSON."""
        out = self.on("core", sys.executable, SELF, "--client", *args, env=env, timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])

    def up(self, mbit: int) -> None:
        self.sh(str(DEPLOY / "hosts.sh"), "up", "--brokers", "2", "--uplink-mbit", str(mbit))
        self.mbit = mbit
        self.sh(str(DEPLOY / "servers-up.sh"), timeout=900)

    def down(self) -> None:
        for p in self.procs:
            stop(p)
        with contextlib.suppress(Exception):
            self.sh(str(DEPLOY / "down.sh"), timeout=300)
        with contextlib.suppress(Exception):  # whatever down.sh left of the namespaces
            self.sh(str(DEPLOY / "hosts.sh"), "down", timeout=120)

    def _hosts(self) -> dict[str, str]:
        env = (self.var / "run" / "hosts.env").read_text()
        return dict(line.split("=", 1) for line in env.split())

    def _ns(self) -> str:
        return f"{self._hosts()['HOSTS_PREFIX']}-edge"

    def host_ip(self, host: str) -> str:
        """The data centre's address (deploy/lib.sh host_ip: dc is .41)."""
        assert host == "dc"
        return f"{self._hosts()['HOSTS_NET']}.41"

    def set_rate(self, mbit: float) -> None:
        """The edge uplink's token bucket at ``mbit`` (burst as deploy/hosts.sh sets it)."""
        burst = max(int(mbit * 1250), 32768)
        subprocess.run(
            ["tc", "-n", self._ns(), "qdisc", "change", "dev", "eth0", "root", "tbf", "rate",
             f"{mbit}mbit", "burst", str(burst), "latency", "200ms"],
            check=True,
        )  # fmt: skip
        self.mbit = mbit

    def uplink_counters(self) -> dict[str, int]:
        from splitee.evaluate.uplink import qdisc_counters

        out = subprocess.run(
            ["tc", "-n", self._ns(), "-s", "qdisc", "show", "dev", "eth0"],
            capture_output=True,
            text=True,
            check=True,
        )
        return qdisc_counters(out.stdout)


def stop(p: subprocess.Popen, grace: float = 30.0) -> None:
    if p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)


def cameras_env(count: int, seed: int = 1) -> dict[str, str]:
    """2 cameras, pristine then distorted halves (noise on one, blur on the other); ``seed``
    picks the frames (each camera draws the test split in its own seeded order)."""
    half = max(1, count // 2)
    rest = max(1, count - half)
    cams = [
        {"id": "cam-1", "seed": seed, "schedule": [f"pristine@{half}f", f"noise:0.1@{rest}f"]},
        {"id": "cam-2", "seed": seed + 1, "schedule": [f"pristine@{half}f", f"blur:1.5@{rest}f"]},
    ]
    return {"SPLITEE_PRODUCER__CAMERAS": json.dumps(cams)}


def policy_env(pol: str, mbit: float, quality: int | None, **extra: str) -> dict[str, str]:
    """The workers' settings of one policy at one link rate."""
    env = {
        "SPLITEE_POLICY__OFFLOAD_COST_MODE": "latency",
        "SPLITEE_POLICY__JPEG_BYTES": str(JPEG_BYTES),
        "SPLITEE_POLICY__UPLINK_MBPS": str(mbit),
        "SPLITEE_POLICY__NAME": "fixed:1" if pol in ("a", "a2") else "isplitee",
    }
    if pol == "a2":
        env["SPLITEE_EDGE__FRAME_QUALITY"] = str(quality)
    if pol in ("c", "c1", "c2", "ducb", "swucb"):
        env["SPLITEE_MODEL__BOTTLENECK"] = str(BOTTLENECK)
    if pol == "c2":
        env["SPLITEE_POLICY__ALPHA_GRID"] = ALPHA_GRID
    if pol == "c1":  # no rate point is within 0 of the unsplit model: each arm's best
        env["SPLITEE_MODEL__BOTTLENECK_MAX_DROP"] = "0"
    return {**env, **extra}


def run_env(tag: str) -> dict[str, str]:
    """Topics, groups and policy key of one run: nothing of an earlier run is consumed."""
    return {
        "SPLITEE_KAFKA__FRAMES_TOPIC": f"{tag}-frames",
        "SPLITEE_KAFKA__TRUTH_TOPIC": f"{tag}-truth",
        "SPLITEE_KAFKA__OFFLOAD_TOPIC": f"{tag}-offload",
        "SPLITEE_KAFKA__RESULTS_TOPIC": f"{tag}-results",
        "SPLITEE_KAFKA__GROUP_PREFIX": tag,
        "SPLITEE_POLICY__KEY": tag,
    }


class Workers:
    """One edge and one cloud worker of one run, on their hosts, and their topics."""

    def __init__(
        self, topo: Topology, tag: str, env: dict[str, str], cloud_metrics: int = 0
    ) -> None:
        """``cloud_metrics``: the cloud worker serves /metrics on this port of its host (the
        link-change run reads its measured uplink rate there)."""
        self.topo, self.tag, self.env = topo, tag, {**run_env(tag), **env}
        topo.client("topics", env=self.env)  # frames, truth on broker 1; the rest on 2
        self.edge = topo.start("edge", f"{tag}-edge", *SPLITEE, "edge", "--worker-id",
                               f"{tag}-edge", env=self.env)  # fmt: skip
        cloud_env = {**self.env, "SPLITEE_DEPLOY__METRICS_HOST": topo.host_ip("dc")}
        self.cloud = topo.start("dc", f"{tag}-cloud", *SPLITEE, "cloud", "--worker-id",
                                f"{tag}-cloud", "--metrics-port", str(cloud_metrics),
                                env=cloud_env)  # fmt: skip
        topo.on("core", *SPLITEE, "wait-ready", "--edge", "1", "--cloud", "1", "--timeout",
                "900", env=self.env, timeout=960)  # fmt: skip

    def stream(self, run: str, count: int, fps: float, seed: int = 1) -> None:
        """``count`` frames per camera at ``fps`` from beside broker 1 (returns when sent)."""
        self.topo.on("kafka1", *SPLITEE, "produce", "--count", str(count), "--fps", str(fps),
                     "--run-id", run, env={**self.env, **cameras_env(count, seed)},
                     timeout=count / fps * 4 + 300)  # fmt: skip

    def stream_async(self, run: str, count: int, fps: float) -> subprocess.Popen:
        return self.topo.start("kafka1", f"{run}-cameras", *SPLITEE, "produce", "--count",
                               str(count), "--fps", str(fps), "--run-id", run,
                               env={**self.env, **cameras_env(count)})  # fmt: skip

    def results(self, run: str, timeout: float) -> dict:
        return self.topo.client("results", run, str(timeout), env=self.env, timeout=timeout + 120)

    def stop(self) -> None:
        stop(self.edge)
        stop(self.cloud)


def measured_run(w: Workers, count: int, fps: float, timeout: float, run: str = "m") -> dict:
    """One stream at ``fps`` per camera: uplink bytes (tc), results, edge CPU per frame."""
    run = f"{w.tag}-{run}"
    tc0, cpu0 = w.topo.uplink_counters(), cpu_seconds(w.edge.pid)
    w.stream(run, count, fps)
    got = w.results(run, timeout)
    tc1, cpu1 = w.topo.uplink_counters(), cpu_seconds(w.edge.pid)
    s = got["summary"]
    n = max(1, s.get("frames", 0))
    return {
        "frames": s.get("frames", 0),
        "missing": got["missing"],
        "accuracy": s.get("accuracy"),
        "p50_ms": round(1000 * s["latency_p50_s"], 1) if n and "latency_p50_s" in s else None,
        "p99_ms": round(1000 * s["latency_p99_s"], 1) if n and "latency_p99_s" in s else None,
        "uplink_bytes": tc1["bytes"] - tc0["bytes"],
        "uplink_bytes_per_frame": round((tc1["bytes"] - tc0["bytes"]) / n, 1),
        "uplink_dropped_packets": tc1["dropped"] - tc0["dropped"],
        "offload_bytes_per_frame": s.get("offload_bytes_per_frame"),
        "jpeg_bytes_per_frame": s.get("jpeg_bytes_per_frame"),
        "edge_cpu_s_per_frame": round((cpu1 - cpu0) / n, 4),
        "offload_fraction": s.get("offload_fraction"),
        "arms": s.get("arms"),
    }


def warm_run(w: Workers, args: argparse.Namespace, cold: dict) -> dict:
    """The learning policy's steady state: after its cold run (a fresh policy, exploring), a
    warm-up stream of other frames at twice the rate (other seeds: the policy learns from
    confidences, never labels), then the cold run's frames again, measured. The row's figures
    are the warm run's; ``cold`` keeps the first."""
    run = f"{w.tag}-w"
    w.stream(run, args.warmup, 2 * args.fps, seed=101)  # twice the rate: it need not keep up
    w.results(run, args.timeout)  # drained: the measured run starts on an empty queue
    warm = measured_run(w, args.frames, args.fps, args.timeout, run="m2")
    return {**warm, "warmup_frames": 2 * args.warmup, "cold": cold}


def sustained_rate(w: Workers, steps: list[float], seconds: float, batch: int) -> dict:
    """Camera rates stepped up (per camera, 2 cameras) until the lag of ``frames`` (edge
    group) or ``offload`` (cloud group) grows; the highest rate that kept it flat."""
    from splitee.evaluate.uplink import keeps_up, lag_slope

    best, sweep = 0.0, []
    for i, fps in enumerate(steps):
        run = f"{w.tag}-s{i}"
        count = max(4, int(fps * seconds))
        watch = w.topo.start("core", f"{run}-lag", sys.executable, SELF, "--client",
                             "lagwatch", str(seconds + 4), env=w.env)  # fmt: skip
        w.stream(run, count, fps)
        watch.wait(seconds + 120)
        samples = last_json(w.topo.log / f"{run}-lag.log").get("samples", [])
        edge = lag_slope([(t, f) for t, f, _ in samples])
        cloud = lag_slope([(t, o) for t, _, o in samples])
        final = samples[-1][1] + samples[-1][2] if samples else 0.0
        ok = keeps_up(max(edge, cloud), 2 * fps, batch, final) and bool(samples)
        sweep.append({"fps_per_camera": fps, "frames_lag_slope": round(edge, 2),
                      "offload_lag_slope": round(cloud, 2), "final_lag": final,
                      "keeps_up": ok})  # fmt: skip
        if not ok:
            break
        best = fps
    return {"sustained_fps_per_camera": best, "sweep": sweep}


def choose_quality(images: Path, limit: int, tol_points: float = 1.0) -> dict:
    """The lowest JPEG quality whose frames, fitted to 224 px and re-encoded, keep the final
    exit's accuracy within ``tol_points`` of the camera's JPEGs (on a seeded random ``limit``
    of the test frames: the split is sorted by class, so its head would be a few classes)."""
    import dataclasses

    import numpy as np
    import torch

    from splitee.evaluate.rate_accuracy import subset_indices
    from splitee.images import decode_fit, open_source
    from splitee.jpeg import encode_jpeg
    from splitee.models import load_checkpoint, to_input

    model = load_checkpoint(MODEL, fuse=True).eval()
    src = open_source(images, "test")
    pick = subset_indices(len(src), limit)  # rate-accuracy's and the evaluation's subset
    src = dataclasses.replace(
        src,
        members=tuple(src.members[i] for i in pick),
        labels=tuple(src.labels[i] for i in pick),
    )
    frames = [(decode_fit(data, model.input_size), y) for _, data, y in src.iter_bytes()]
    labels = np.array([y for _, y in frames])
    last = model.num_exits - 1

    def accuracy(imgs: list[np.ndarray]) -> float:
        right = 0
        with torch.inference_mode():
            for i in range(0, len(imgs), 16):
                x = to_input(np.stack(imgs[i : i + 16]))
                pred = model.exit_logits(model.prefix(x, last), last).argmax(1).numpy()
                right += int((pred == labels[i : i + 16]).sum())
        return 100.0 * right / len(imgs)

    base = accuracy([img for img, _ in frames])
    table, chosen = {}, 95
    for q in (10, 15, 20, 25, 30, 40, 50, 60, 75, 90):
        enc = [encode_jpeg(img, q) for img, _ in frames]
        acc = accuracy([decode_fit(e, model.input_size) for e in enc])
        table[q] = {"accuracy": round(acc, 2), "bytes": int(np.median([len(e) for e in enc]))}
        if acc >= base - tol_points:
            chosen = q
            break
    return {"quality": chosen, "frames": len(frames), "accuracy_original": round(base, 2),
            "tried": table}  # fmt: skip


def compare(topo: Topology, args: argparse.Namespace, quality: int) -> list[dict]:
    rows = []
    for mbit in args.rates:
        topo.set_rate(mbit)
        for pol in args.policies:
            tag = f"u{uuid.uuid4().hex[:6]}-{pol}-{int(mbit)}"
            print(f"[uplink] {pol} at {mbit} Mbit/s ({tag})", file=sys.stderr, flush=True)
            w = Workers(topo, tag, policy_env(pol, mbit, quality))
            try:
                row = {"policy": pol, "what": POLICIES[pol], "mbit": mbit}
                first = measured_run(w, args.frames, args.fps, args.timeout)
                if pol in LEARNING and args.warmup:
                    row.update(warm_run(w, args, first))
                else:
                    row.update(first)
                row.update(sustained_rate(w, args.steps, args.step_seconds, 32))
            finally:
                w.stop()
            if pol == "a2":
                row["jpeg_quality"] = quality
            print(f"[uplink] {json.dumps(row)}", file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def link_change(topo: Topology, args: argparse.Namespace) -> dict:
    """10 → 2 → 10 Mbit/s mid-stream under the latency cost with a measured rate."""
    from splitee.evaluate.uplink import link_change_summary

    rates = args.change_rates
    per_phase_s = args.change_frames / (2 * args.fps)  # 2 cameras
    out, traces = {}, {}
    for name in args.change_policies:
        topo.set_rate(rates[0])
        tag = f"u{uuid.uuid4().hex[:6]}-{name}"
        print(f"[uplink] link change, {name} ({tag})", file=sys.stderr, flush=True)
        env = policy_env(name, rates[0], None, SPLITEE_POLICY__NAME=name,
                         SPLITEE_POLICY__SIDE_OBSERVATIONS="true",
                         SPLITEE_POLICY__UPLINK_RATE="measured",
                         SPLITEE_POLICY__UPLINK_MBPS=str(max(rates)))  # fmt: skip
        if args.discount is not None:
            env["SPLITEE_POLICY__DISCOUNT"] = str(args.discount)
        if args.window is not None:
            env["SPLITEE_POLICY__WINDOW"] = str(args.window)
        env["SPLITEE_POLICY__UPLINK_HALFLIFE"] = str(args.uplink_halflife)
        if args.trace_uplink:
            env["SPLITEE_LOG_LEVELS"] = json.dumps({"splitee.uplink": "DEBUG"})
        w = Workers(topo, tag, env, cloud_metrics=CLOUD_METRICS_PORT)
        try:
            run = f"{tag}-lc"
            count = int(args.change_frames * len(rates) / 2)  # per camera
            url = f"http://{topo.host_ip('dc')}:{CLOUD_METRICS_PORT}/metrics"
            span = per_phase_s * len(rates) + 10
            rate_log = topo.start("core", f"{run}-rate", sys.executable, SELF, "--client",
                                  "ratewatch", url, str(span), env=w.env)  # fmt: skip
            cams = w.stream_async(run, count, args.fps)
            start, changes = time.time(), []
            for i, mbit in enumerate(rates[1:], start=1):
                time.sleep(max(0.0, start + i * per_phase_s - time.time()))
                topo.set_rate(mbit)
                changes.append(time.time())
            cams.wait(per_phase_s * len(rates) * 4 + 300)
            got = w.results(run, args.timeout)
            rate_log.wait(span + 60)
            measured = last_json(topo.log / f"{run}-rate.log").get("samples", [])
        finally:
            w.stop()
        if args.trace_uplink and args.out:
            keep = [ln for ln in (topo.log / f"{tag}-cloud.log").read_text().splitlines()
                    if '"uplink sample"' in ln]  # fmt: skip
            (args.out / f"uplink_samples_{name}.jsonl").write_text("\n".join(keep) + "\n")
        import numpy as np

        from splitee.evaluate.uplink import phase_of, rewards_at_link

        fr = got["frames"]
        ts = np.array([f[0] for f in fr])
        arms = np.array([f[1] for f in fr], dtype=np.int64)
        seen = np.array([f[2] for f in fr])
        cm = latency_costs(topo, w.env)
        at = [cm.at_rate(r * 1e6) for r in rates]
        o = [  # each offload at the bytes it sent, on the link's rate in its phase
            at[ph].for_payload({int(a): float(f[5])}).offload_costs[int(a)]
            for f, a, ph in zip(fr, arms, phase_of(ts, changes), strict=True)
        ]
        true = rewards_at_link(
            np.array([f[3] for f in fr]),
            arms,
            np.array([f[4] for f in fr], dtype=bool),
            cm.compute_cost,
            np.array(o),
            cm.mu,
        )
        phases = link_change_summary(ts, arms, true, changes, rates)
        as_seen = link_change_summary(ts, arms, seen, changes, rates)
        for p, q in zip(phases, as_seen, strict=True):  # the rewards the policy learned from
            p["as_seen"] = {k: q.get(k) for k in ("best_arm", "settle_frames", "regret")}
        for p in phases:  # the cloud's estimate at the end of each phase, Mbit/s
            end = changes[p["phase"]] if p["phase"] < len(changes) else float("inf")
            est = [r for t, r in measured if t <= end]
            p["measured_mbit_at_end"] = round(est[-1] / 1e6, 2) if est else None
        out[name] = {"phases": phases, "missing": got["missing"], "frames": len(fr)}
        traces[name] = {"ts": ts.tolist(), "arms": arms.tolist(), "changes": changes,
                        "rates": rates, "start": start, "measured": measured}  # fmt: skip
        print(f"[uplink] {name}: {json.dumps(out[name])}", file=sys.stderr, flush=True)
    if args.out:
        from splitee.evaluate.uplink import plot_link_change

        plot_link_change(traces, args.out / "link_change.png")
    return out


def latency_costs(topo: Topology, env: dict[str, str]):
    """The workers' cost model (the latency pricing of their model and bottleneck), built from
    their settings here, to price every frame at the link's true rate of its phase."""
    from splitee import policy_setup
    from splitee.models import load_checkpoint
    from splitee.settings import Settings

    saved = dict(os.environ)
    try:
        os.environ.update({**topo.env, **env})
        s = Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    _, cm = policy_setup.model_and_costs(s, load_checkpoint(s.model.checkpoint, fuse=True))
    return cm


# ------------------------------------------------------------------ client mode (on core)
def client_main(argv: list[str]) -> None:
    """Run inside the topology (``hosts.sh exec core``): its addresses exist only there."""
    from splitee.settings import Settings

    s = Settings()
    if argv[0] == "topics":
        print(json.dumps(create_placed_topics(s)))
    elif argv[0] == "lagwatch":
        print(json.dumps({"samples": watch_lag(s, float(argv[1]))}))
    elif argv[0] == "ratewatch":
        print(json.dumps({"samples": watch_rate(argv[1], float(argv[2]))}))
    elif argv[0] == "results":
        print(json.dumps(run_results(s, argv[1], float(argv[2]))))
    else:
        raise SystemExit(f"unknown client command {argv[0]!r}")


def create_placed_topics(s) -> dict:
    """The run's topics with their leaders placed: the edge site's broker (1) leads frames
    and truth, the data centre's (2) offload and results; 2 replicas each."""
    from kafka.admin import NewTopic

    from splitee.kafka_io import admin, dlq, pipeline_topics, topic_configs

    k = s.kafka
    site = {k.frames_topic, k.truth_topic, dlq(k.frames_topic, k)}
    client = admin(k)
    try:
        existing = set(client.list_topics())
        new = []
        for name, n in pipeline_topics(k).items():
            if name in existing:
                continue
            lead = 1 if name in site else 2
            cfg = topic_configs(k, 2)
            if name == k.offload_topic:  # the broker stamps arrival: the uplink's end time
                cfg["message.timestamp.type"] = "LogAppendTime"
            new.append(
                NewTopic(
                    name,
                    num_partitions=-1,
                    replication_factor=-1,
                    replica_assignments={p: [lead, 3 - lead] for p in range(n)},
                    topic_configs=cfg,
                )
            )
        if new:
            client.create_topics(new)
        leaders = {}
        for d in client.describe_topics(list(pipeline_topics(k))):
            leaders[d["topic"]] = sorted({p["leader"] for p in d["partitions"]})
        return leaders
    finally:
        client.close()


def watch_lag(s, seconds: float) -> list[tuple[float, int, int]]:
    """(t, lag of frames for the edge group, lag of offload for the cloud group), every 0.5 s."""
    from splitee.kafka_io import admin, committed_and_end, consumer

    k = s.kafka
    a, c = admin(k), consumer(k, group_id=None)
    out: list[tuple[float, int, int]] = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < seconds:
            lags = []
            for group, topic in (("edge", k.frames_topic), ("cloud", k.offload_topic)):
                got = committed_and_end(a, c, f"{k.group_prefix}-{group}", [topic])
                lags.append(sum(max(0, e - done) for done, e in got.values()))
            out.append((round(time.monotonic() - t0, 2), lags[0], lags[1]))
            time.sleep(0.5)
    finally:
        a.close()
        c.close()
    return out


def watch_rate(url: str, seconds: float) -> list[tuple[float, float]]:
    """(unix time, the cloud's measured uplink rate in bit/s) from its /metrics, every 1 s."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    out: list[tuple[float, float]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with contextlib.suppress(OSError):
            text = urllib.request.urlopen(url, timeout=2).read().decode()
            for fam in text_string_to_metric_families(text):
                for smp in fam.samples:
                    if smp.name == "splitee_uplink_rate_bits_per_second" and (
                        smp.labels.get("source") == "measured"
                    ):
                        out.append((round(time.time(), 2), float(smp.value)))
        time.sleep(1.0)
    return out


def last_json(path: Path) -> dict:
    """The last line a client printed into its log, as JSON ({} when there is none)."""
    lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    with contextlib.suppress(ValueError, IndexError):
        return json.loads(lines[-1])
    return {}


def run_results(s, run: str, timeout: float) -> dict:
    """Every frame of the run joined with its truth: the summary, and per frame (capture
    time, arm, reward as the policy saw it: confidence − μ·cost, confidence, offloaded, the
    bytes it offloaded)."""
    from splitee.files import exit_depths
    from splitee.policy_setup import cost_model
    from splitee.results import collect_results, collect_truth, summarize

    k = s.kafka
    truth = {f: t for f, t in collect_truth(k, timeout_s=60).items() if t.get("run_id") == run}
    view = collect_results(k, set(truth), timeout, run)
    cm = cost_model(s, exit_depths(s.model.checkpoint))
    mu = s.policy.mu
    frames = [
        (
            r.capture_ts,
            r.arm,
            r.confidence - mu * r.cost,
            r.confidence,
            r.where == "cloud",
            r.offload_bytes or 0,
        )
        for f, r in view.results.items()
        if f in truth
    ]
    return {
        "summary": summarize(view.results, truth, cm.final_cost),
        "missing": len(set(truth) - set(view.results)),
        "frames": sorted(frames),
    }


# ------------------------------------------------------------------------------- main
def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke: few frames, short steps")
    ap.add_argument("--link-change", action="store_true", help="the 10 → 2 → 10 experiment")
    ap.add_argument("--rates", type=floats, default=None, help="uplink Mbit/s (2,10)")
    ap.add_argument("--policies", default=None, help="of a,a2,b,c (all)")
    ap.add_argument("--frames", type=int, default=None, help="per camera, measured run (120)")
    ap.add_argument("--fps", type=float, default=None, help="per camera (4; link change 6)")
    ap.add_argument(
        "--warmup", type=int, default=None, help="b, c: frames per camera, cold to warm (300)"
    )
    ap.add_argument("--steps", type=floats, default=None, help="fps per camera to step through")
    ap.add_argument("--step-seconds", type=float, default=None, help="each step's stream (12)")
    ap.add_argument("--fair-quality", type=int, default=None, help="a2's JPEG quality (search)")
    ap.add_argument("--quality-frames", type=int, default=300, help="frames of that search")
    ap.add_argument("--change-policies", default="ducb,swucb")
    ap.add_argument(
        "--trace-uplink",
        action="store_true",
        help="link change: the cloud's uplink rate samples (bits, hop, arrival, estimate) into "
        "<out>/uplink_samples_<policy>.jsonl",
    )
    ap.add_argument("--change-rates", type=floats, default=[10.0, 2.0, 10.0])
    ap.add_argument("--change-frames", type=int, default=None, help="frames per phase (1500)")
    ap.add_argument("--discount", type=float, default=None, help="D-UCB's (policy.discount)")
    ap.add_argument("--window", type=int, default=None, help="SW-UCB's (policy.window)")
    ap.add_argument(
        "--uplink-halflife", type=int, default=10, help="the rate estimate's, in edge batches"
    )
    ap.add_argument("--timeout", type=float, default=600.0, help="results wait per run (s)")
    ap.add_argument("--images", type=Path, default=None)
    ap.add_argument("--net", default="10.79.0", help="the topology's /24 (10.X.Y)")
    ap.add_argument("--out", type=Path, default=None, help="write JSON and PNGs here")
    args = ap.parse_args()
    q = args.quick
    args.rates = args.rates or ([2.0] if q else [2.0, 10.0])
    args.policies = (args.policies or ("a,c" if q else "a,a2,b,c")).split(",")
    args.frames = args.frames or (12 if q else 120)
    args.warmup = (12 if q else 300) if args.warmup is None else args.warmup
    args.fps = args.fps or (2.0 if q else 6.0 if args.link_change else 4.0)
    args.steps = args.steps or ([2.0, 6.0] if q else [4.0, 8.0, 12.0, 16.0])
    args.step_seconds = args.step_seconds or (6.0 if q else 12.0)
    args.change_frames = args.change_frames or (40 if q else 1500)
    args.change_policies = args.change_policies.split(",")[: 1 if q else None]
    bad = [p for p in args.policies if p not in POLICIES]
    if bad:
        ap.error(f"unknown policies {bad}; of {sorted(POLICIES)}")
    if os.geteuid() != 0:
        ap.error("needs root: network namespaces and tc (deploy/hosts.sh)")
    images = args.images or Path(
        os.environ.get("SPLITEE_DATA__IMAGES", REPO / "assets" / "caltech101-sample.zip")
    )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    # a kill (timeout, a scheduler) still tears the topology down: SystemExit runs `finally`
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from splitee.machine import machine_description

    t0 = time.monotonic()
    report: dict = {
        "bench": "uplink-link-change" if args.link_change else "uplink",
        "machine": machine_description(),
        "images": images.name,
        "quick": q,
    }
    quality = None
    if not args.link_change and "a2" in args.policies:
        if args.fair_quality is not None:
            quality = args.fair_quality
        else:
            search = choose_quality(images, 24 if q else args.quality_frames)
            report["fair_quality_search"] = search
            quality = search["quality"]
    with tempfile.TemporaryDirectory(prefix="splitee-uplink-") as tmp:
        var = Path(tmp) / "var"
        logs = Path(tmp) / "logs"
        logs.mkdir()
        topo = Topology(var, args.net, images, logs)
        first = args.change_rates[0] if args.link_change else args.rates[0]
        try:
            topo.up(int(first))
            if args.link_change:
                report["link_change"] = link_change(topo, args)
                report["config"] = {
                    "rates_mbit": args.change_rates,
                    "frames_per_phase": args.change_frames,
                    "fps_per_camera": args.fps,
                    "policies": args.change_policies,
                }
            else:
                report["results"] = compare(topo, args, quality)
                report["config"] = {
                    "frames_per_camera": args.frames,
                    "warmup_frames_per_camera": args.warmup,
                    "fps_per_camera": args.fps,
                    "steps": args.steps,
                    "step_seconds": args.step_seconds,
                }
        except Exception:
            for f in sorted(logs.glob("*.log")):  # what the workers said, before it goes
                tail = f.read_text(errors="replace")[-1500:]
                print(f"--- {f.name}\n{tail}", file=sys.stderr)
            raise
        finally:
            topo.down()
    report["seconds"] = round(time.monotonic() - t0, 1)
    if args.out:
        name = "link_change.json" if args.link_change else "uplink.json"
        (args.out / name).write_text(json.dumps(report, indent=2) + "\n")
        if not args.link_change:
            from splitee.evaluate.uplink import plot_comparison

            plot_comparison(report["results"], args.out / "uplink.png")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
