"""Observability, live: a real pipeline (edge, cloud, evaluator, exporter, cameras) scraped by
a real Prometheus. Every query of every dashboard panel must return data, ``splitee top``
and ``splitee report`` must show the running deployment, and a clean stop must remove every
file_sd target.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import uuid

import numpy as np
import pytest
from PIL import Image

from splitee import metrics
from splitee.kafka_io import producer
from splitee.observability import dashboards as D
from splitee.observability import queries as Q
from splitee.observability.promapi import PromClient
from splitee.testing import REPO, SPLITEE, Pipeline, free_port
from splitee.wire import FrameMeta, OffloadMeta, encode_tensor

CAMERAS = [
    {
        "id": "cam-1",
        "fps": 10,
        "seed": 1,
        "schedule": ["pristine@6s", "noise:0.1@6s"],
        "cycle": True,
    },
    {
        "id": "cam-2",
        "fps": 10,
        "seed": 2,
        "schedule": ["blur:1.0@6s", "pristine@6s"],
        "cycle": True,
    },
]
PHASES = {"pristine", "noise:0.1", "blur:1"}
#: Grafana variables as the test substitutes them: a rate window and "all cameras".
VARIABLES = {"$__rate_interval": "1m", "$camera": ".*"}


@pytest.fixture(scope="module")
def live(servers, tmp_path_factory):
    tag = uuid.uuid4().hex[:6]
    p = Pipeline.create(
        tmp_path_factory.mktemp("observability"),
        SPLITEE_PRODUCER__CAMERAS=json.dumps(CAMERAS),
        SPLITEE_PRODUCER__COUNT="0",  # endless, until the test stops it
    )
    s = p.settings
    client = PromClient(s.observability.prometheus_url)
    client.wait_ready()
    workers = {
        f"obs{tag}-edge": "edge",
        f"obs{tag}-cloud": "cloud",
        f"obs{tag}-evaluator": "evaluator",
        f"obs{tag}-exporter": "exporter",
    }
    for name, role in workers.items():
        p.start(role, name, free_port())
    try:
        p.wait_ready(edge=1, cloud=1)
        cams = f"obs{tag}-cameras"
        p.start("produce", cams, free_port())
        workers[cams] = "producer"
        started = time.time()
        send_bad_records(p)
        yield {"p": p, "client": client, "workers": workers, "started": started}
    finally:
        p.stop()


def send_bad_records(p: Pipeline) -> None:
    """One corrupt frame and one truncated offload, so the dead-letter panels have data."""
    k = p.settings.kafka
    prod = producer(k)
    meta = FrameMeta(f"bad:{uuid.uuid4().hex[:6]}", "cam-bad", time.time())
    prod.send(k.frames_topic, key=b"cam-bad", value=b"\xff\xd8 no jpeg", headers=meta.headers())
    om = OffloadMeta(
        arm=0, confidences=[0.1] + [None] * 8, codec="float16", policy="global", edge_ts=time.time()
    ).headers()
    feats = encode_tensor(np.zeros((16, 32, 32), np.float32), "float16")[:-6]
    prod.send(k.offload_topic, key=b"x", value=feats, headers=meta.headers() + om)
    prod.flush()
    prod.close()


def substitute(expr: str) -> str:
    for var, value in VARIABLES.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def panel_queries() -> list[tuple[str, str, str, str]]:
    """(dashboard, panel, refId, expr) of every panel query of every committed dashboard."""
    return [
        (name, title, ref, substitute(expr))
        for name, model in D.load_all().items()
        for title, ref, expr in D.panel_queries(model)
    ]


def finite(series) -> bool:
    return any(math.isfinite(s.value) for s in series)


def test_every_panel_query_of_every_dashboard_returns_data(live):
    client: PromClient = live["client"]
    queries = panel_queries()
    assert len(queries) >= 40
    t0 = time.monotonic()
    deadline = t0 + 150
    missing: list[str] = []
    while True:
        missing = [
            f"{d} / {title} / {ref}: {expr}"
            for d, title, ref, expr in queries
            if not finite(client.query(expr))
        ]
        # the phases the test streamed are all there (cam-1's second phase starts at 6 s, so
        # the panels can have data before its first results are scraped)
        phases = {s.labels["distortion"] for s in client.query(Q.ACCURACY_BY_PHASE)}
        if (not missing and phases >= PHASES) or time.monotonic() > deadline:
            break
        for name, proc in live["p"].procs.items():
            assert proc.poll() is None, f"{name} died:\n{live['p'].log_tail(name)}"
        time.sleep(5)
    assert not missing, "panels without data:\n" + "\n".join(missing)
    print(f"{len(queries)} panel queries returned data after {time.monotonic() - t0:.0f}s")
    assert phases >= PHASES
    cams = {s.labels["camera"] for s in client.query(Q.current_arm())}
    assert {"cam-1", "cam-2"} <= cams


def test_every_process_registered_its_target_and_is_scraped(live):
    client: PromClient = live["client"]
    targets = metrics.targets_dir(live["p"].settings.var_dir)
    files = {p.stem for p in targets.glob("*.json")}
    assert set(live["workers"]) <= files
    up = {
        t["labels"].get("worker"): (t["labels"].get("role"), t["health"])
        for t in client.targets()
        if t["labels"].get("job") == "splitee"
    }
    for worker, role in live["workers"].items():
        assert up.get(worker) == (role, "up"), (worker, up.get(worker))
    # role and worker reach every series as target labels
    roles = {s.labels.get("role") for s in client.query('count by (role) ({job="splitee"})')}
    assert {"edge", "cloud", "evaluator", "exporter", "producer"} <= roles


def test_top_once_shows_the_running_deployment(live):
    env = live["p"].env
    out = subprocess.run(
        [*SPLITEE, "top", "--once"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    for needle in ("results / s", "accuracy (window)", "cam-1", "cam-2", "consumer lag"):
        assert needle in out.stdout, out.stdout
    assert re.search(r"accuracy \(window\)\W+\d+\.\d %", out.stdout), out.stdout
    js = subprocess.run(
        [*SPLITEE, "top", "--json"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    snap = json.loads(js.stdout)
    head = snap["headline"]
    assert head["results_per_s"] > 0
    assert 0 <= head["accuracy"] <= 1 and head["cost_reduction"] is not None
    assert head["regret"] is not None and head["best_fixed_arm"] >= 1
    assert {"cam-1", "cam-2"} <= set(snap["cameras"])
    tag = env["SPLITEE_KAFKA__GROUP_PREFIX"]
    assert f"{tag}-edge" in snap["lag"] and f"{tag}-evaluator" in snap["lag"]
    assert any(t["worker"] in live["workers"] and t["health"] == "up" for t in snap["targets"])


def test_report_draws_every_chart_with_the_expected_series(live, tmp_path):
    tag = live["p"].env["SPLITEE_KAFKA__GROUP_PREFIX"]
    want = {
        ("throughput", "frames / s"): {"in edge", "in cloud"},
        ("throughput", "frames sent"): {"cam-1", "cam-2"},
        ("latency", "end to end"): {"p50", "p90", "p99"},
        ("latency", "stage"): {"decode", "edge_compute", "cloud_compute", "produce"},
        ("arms", "current arm"): {"cam-1", "cam-2"},
        ("phases", "accuracy per phase"): PHASES,
        ("phases", "cost reduction per phase"): PHASES,
        ("quality", "evaluator window"): {"accuracy", "cost reduction", "offloaded"},
        ("quality", "estimated regret"): {"regret"},
        ("lag", "messages"): {f"{tag}-edge", f"{tag}-cloud"},
    }
    # a rate needs two scrapes inside its window: on a loaded machine a series may still be
    # empty, so the report is drawn again (as the panel test polls) until every one has points
    deadline = time.monotonic() + 90
    while True:
        charts = draw_report(live, tmp_path / f"report-{int(time.monotonic() * 1000)}")
        missing = [
            (chart, axes, series_points(charts, chart, axes))
            for (chart, axes), names in want.items()
            if not all(series_points(charts, chart, axes).get(n, 0) > 0 for n in names)
        ]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert not missing, missing
    assert sum(1 for n, k in series_points(charts, "arms", "arm choices").items() if k > 0) >= 2


def series_points(charts: dict, chart: str, axes_prefix: str) -> dict[str, int]:
    return {
        s["name"]: s["points"] for s in charts[chart]["series"] if s["axes"].startswith(axes_prefix)
    }


def draw_report(live, out_dir) -> dict:
    """``splitee report`` since the pipeline started; its charts, each checked as a PNG."""
    since = f"{live['started'] - 5:.0f}"
    out = subprocess.run(
        [*SPLITEE, "report", "--since", since, "--out", str(out_dir)],
        env=live["p"].env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    index = json.loads((out_dir / "index.json").read_text())
    charts = {c["name"]: c for c in index["charts"]}
    assert set(charts) == {"throughput", "latency", "arms", "phases", "quality", "lag"}
    for c in charts.values():
        png = out_dir / c["file"]
        assert png.stat().st_size > 10_000
        with Image.open(png) as im:
            assert im.format == "PNG" and im.width >= 800 and im.height >= 250
        assert f"({c['file']})" in (out_dir / "index.md").read_text()
    return charts


def test_clean_stop_removes_every_target(live):
    p: Pipeline = live["p"]
    p.stop()
    left = {f.stem for f in metrics.targets_dir(p.settings.var_dir).glob("*.json")}
    left &= set(live["workers"])
    assert not left, f"targets left after a clean stop: {left}"
