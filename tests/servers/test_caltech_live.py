"""The real-size model live: EfficientNet-Lite0 on Caltech-101 frames through real Kafka + Redis.

The settings of deploy/demo-caltech.toml, scaled down for a 2-core CI machine: the shipped
checkpoint, the shipped Caltech-101 sample as the cameras' source, α unset (the model's own,
0.7) and the bytes-based offload cost, which turns on the send-frame arm 0
(splitee.models.frame_arm): the edge sends the camera's JPEG as received and computes nothing.
1 edge + 1 cloud worker, 2 cameras (`splitee produce`, one pristine and one distorted phase
each, so some frames are re-encoded by the camera and are not byte copies of the zip) stream
80 frames. One run serves every test.

What is checked against what the servers hold, not against the workers' own accounts: the
frames topic says what each camera really sent, the results topic what came back, Redis what
the policy counted, the edge's /metrics and Prometheus what the operators see. Metrics and
dashboards name arms 1-based, like the tables (edge_workers/processor.py): code arm 0, the
send-frame arm, is ``arm="1"`` there, and no series may carry ``arm="0"``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.request
import uuid
import zipfile
from collections import Counter

import numpy as np
import pytest
from kafka import TopicPartition

from splitee import policy_setup
from splitee.kafka_io import consumer, dlq
from splitee.observability import dashboards as D
from splitee.observability.promapi import PromClient
from splitee.results import ResultsView, collect_results, collect_truth, read_topic
from splitee.testing import REPO, Pipeline, free_port_block, settled_stats
from splitee.wire import FrameMeta, encode_tensor

CHECKPOINT = REPO / "assets" / "efficientnet-lite0-caltech101.safetensors"
IMAGES = REPO / "assets" / "caltech101-sample.zip"
PER_CAMERA = 40
CAMERAS = [
    {"id": "cam-1", "fps": 10, "seed": 1, "schedule": ["pristine@20f", "noise:0.1@20f"]},
    {"id": "cam-2", "fps": 10, "seed": 2, "schedule": ["pristine@20f", "blur:1.5@20f"]},
]
#: the Grafana variables as test_observability substitutes them
VARIABLES = {"$__rate_interval": "1m", "$camera": ".*"}


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The edge's /metrics over HTTP: metric name → [(labels, value)]."""
    url = f"http://127.0.0.1:{port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            out.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return out


def by_arm(samples: list[tuple[dict[str, str], float]]) -> dict[str, float]:
    """A counter's values summed per ``arm`` label (over cameras and policies)."""
    out: dict[str, float] = {}
    for labels, value in samples:
        out[labels["arm"]] = out.get(labels["arm"], 0.0) + value
    return out


def frames_sent(p: Pipeline) -> dict[str, bytes]:
    """frame id → the JPEG the camera put on the frames topic (the whole topic, as it is now)."""
    sent: dict[str, bytes] = {}

    def on(rec) -> None:
        sent[FrameMeta.from_headers(rec.headers).frame_id] = rec.value

    read_topic(p.settings.kafka, p.settings.kafka.frames_topic, on, None, 60)
    return sent


def assert_one_result_each(run: dict, frames: int) -> None:
    """Every frame the cameras put on the frames topic (``run["sent"]``, ``frames`` of them)
    has exactly one result in ``run["view"]``, and no dead-letter topic holds a record."""
    sent, view = run["sent"], run["view"]
    assert len(sent) == frames
    missing = set(sent) - set(view.results)
    assert not missing, f"{len(missing)} frames without a result\n{run['p'].log_tail(run['edge'])}"
    assert view.duplicates == 0 and view.bad == 0, (view.duplicates, view.bad_reasons)
    assert set(run["dlq"].values()) == {0}, run["dlq"]


def dlq_records(p: Pipeline) -> dict[str, int]:
    """Records in each dead-letter topic (end offsets; the DLQs have one partition)."""
    k = p.settings.kafka
    c = consumer(k, group_id=None)
    try:
        tps = [TopicPartition(dlq(t, k), 0) for t in (k.frames_topic, k.offload_topic)]
        return {tp.topic: off for tp, off in c.end_offsets(tps).items()}
    finally:
        c.close()


@pytest.fixture(scope="module")
def run(servers, tmp_path_factory):
    """Start the pipeline, stream, and read back everything the tests check (once)."""
    t0 = time.monotonic()
    tag = uuid.uuid4().hex[:6]
    p = Pipeline.create(
        tmp_path_factory.mktemp("caltech"),
        SPLITEE_MODEL__CHECKPOINT=str(CHECKPOINT),
        SPLITEE_DATA__IMAGES=str(IMAGES),
        SPLITEE_POLICY__NAME="isplitee",
        SPLITEE_POLICY__OFFLOAD_COST_MODE="bytes",
        SPLITEE_POLICY__JPEG_BYTES="12844",
        SPLITEE_PRODUCER__SOURCE="images",
        SPLITEE_PRODUCER__CAMERAS=json.dumps(CAMERAS),
        SPLITEE_PRODUCER__COUNT=str(PER_CAMERA),
    )
    edge, cloud = f"cal{tag}-edge", f"cal{tag}-cloud"
    port = free_port_block(1) + 1  # below the ephemeral range: no server can hold it
    p.start("edge", edge, port)
    p.start("cloud", cloud)
    try:
        p.wait_ready(edge=1, cloud=1)
        t_ready = time.monotonic()
        run_id = f"cal-{tag}"
        report = json.loads(p.cli("produce", "--run-id", run_id))
        k = p.settings.kafka
        sent = frames_sent(p)
        view = collect_results(k, set(sent), timeout_s=120, run_id=run_id)
        t_done = time.monotonic()
        # read the whole results topic again, now that every frame has one: a second result
        # for any frame would be counted here as a duplicate
        again = collect_results(k, None, timeout_s=60)
        s = p.settings
        store = policy_setup.store(s, policy_setup.split_arms(s), cache_ms=0)
        print(
            f"workers ready after {t_ready - t0:.1f}s, {len(sent)} frames answered "
            f"{t_done - t_ready:.1f}s later"
        )
        yield {
            "p": p,
            "edge": edge,
            "port": port,
            "report": report,
            "sent": sent,
            "truth": collect_truth(k, set(sent)),
            "view": view,
            "again": again,
            "dlq": dlq_records(p),
            "stats": settled_stats(store, s.policy.key, 0.0, len(sent)),
            "metrics": scrape(port),
        }
    finally:
        p.stop()


@pytest.fixture(scope="module")
def model(run):
    """The workers' model and cost model, built from the same settings as theirs."""
    from splitee.models import load_checkpoint

    s = run["p"].settings
    return policy_setup.model_and_costs(s, load_checkpoint(s.model.checkpoint, fuse=True))


def test_every_frame_sent_gets_exactly_one_result_and_none_is_dead(run):
    sent, view, again = run["sent"], run["view"], run["again"]
    assert run["report"]["sent"] == {"cam-1": PER_CAMERA, "cam-2": PER_CAMERA}, run["report"]
    assert len(sent) == 2 * PER_CAMERA
    missing = set(sent) - set(view.results)
    assert not missing, f"{len(missing)} frames without a result\n{run['p'].log_tail(run['edge'])}"
    assert set(view.results) == set(sent)
    assert isinstance(again, ResultsView)
    assert set(again.results) == set(sent)  # no result for a frame that was not sent
    assert again.duplicates == 0 and again.bad == 0, (again.duplicates, again.bad_reasons)
    assert set(run["dlq"].values()) == {0}, run["dlq"]
    # the camera's own account of the bytes (truth topic) agrees with the frames topic
    assert {f: t["jpeg_bytes"] for f, t in run["truth"].items()} == {
        f: len(b) for f, b in sent.items()
    }


def test_arm0_offloads_carry_the_cameras_jpeg_and_other_arms_the_split_tensor(run, model):
    net, cm = model
    assert net.send_frame and cm.num_arms == 7  # arm 0 + 6 exits
    assert cm.alpha == 0.7  # the model's own α, policy.alpha being unset
    sent, results = run["sent"], run["view"].results
    arms = Counter((r.arm, r.where) for r in results.values())
    frame_arm = [r for r in results.values() if r.arm == 0]
    assert frame_arm, f"no frame took arm 0: {arms}"
    codec = run["p"].settings.edge.codec
    for r in results.values():
        if r.arm == 0:
            # C_0 = 0 < α: always offloaded, with the JPEG exactly as the camera sent it
            assert r.where == "cloud", r
            assert r.offload_bytes == len(sent[r.frame_id]), r
        elif r.where == "cloud":
            shape = net.feature_shape(r.arm)
            assert r.offload_bytes == len(encode_tensor(np.zeros(shape, np.float32), codec)), r
        else:
            assert r.offload_bytes == 0, r  # exited at the edge: nothing went to the cloud
        # an offload is priced at the bytes it carried (the JPEG at its own size)
        priced = cm.for_payload({r.arm: r.offload_bytes})
        expect = cm.compute_cost[r.arm] + (priced.offload_costs[r.arm] if r.where == "cloud" else 0)
        assert r.cost == pytest.approx(float(expect)), r
    # pristine frames go out byte for byte as stored, distorted ones as the camera re-encoded
    # them (at the frame's own resolution): what arm 0 carries is the camera's, not the zip's
    with zipfile.ZipFile(IMAGES) as z:
        stored = {hashlib.sha256(z.read(n)).digest() for n in z.namelist() if n.endswith(".jpg")}
    for f, t in run["truth"].items():
        assert (hashlib.sha256(sent[f]).digest() in stored) == (t["distortion"] == "pristine"), t
    print(f"arms (arm, where): {dict(sorted(arms.items()))}")


def test_policy_store_counted_every_decision_with_arm0(run):
    stats, results = run["stats"], run["view"].results
    per_arm = Counter(r.arm for r in results.values())
    assert stats.num_arms == 7
    assert stats.pulls.sum() == len(results) == 2 * PER_CAMERA
    assert float(stats.t) == len(results)
    assert stats.pulls.tolist() == [per_arm.get(a, 0) for a in range(7)]
    # arm 0's statistics: its rewards (cloud-applied, as every arm-0 frame is offloaded)
    assert stats.pulls[0] > 0 and stats.n[0] >= stats.pulls[0]
    assert np.isfinite(stats.means()[0])


def test_edge_metrics_count_arm0_under_its_1_based_label(run):
    m, results = run["metrics"], run["view"].results
    chosen = by_arm(m["splitee_arm_chosen_total"])
    offloads = by_arm(m["splitee_offloads_total"])
    exits = by_arm(m.get("splitee_exits_total", []))
    for name, counts in (("chosen", chosen), ("offloads", offloads), ("exits", exits)):
        assert "0" not in counts, f"{name}: an arm=0 series, but metrics name arms 1-based"
    per_arm = Counter(str(r.arm + 1) for r in results.values())
    cloud = Counter(str(r.arm + 1) for r in results.values() if r.where == "cloud")
    edge = Counter(str(r.arm + 1) for r in results.values() if r.where == "edge")
    assert {a: v for a, v in chosen.items() if v} == per_arm
    assert {a: v for a, v in offloads.items() if v} == cloud
    assert {a: v for a, v in exits.items() if v} == edge
    assert chosen["1"] == offloads["1"] == sum(1 for r in results.values() if r.arm == 0) > 0
    # every byte offloaded is in the byte counter, the JPEGs of arm 0 under codec="jpeg"
    by_codec: Counter[str] = Counter()
    for labels, v in m["splitee_offload_bytes_total"]:
        by_codec[labels["codec"]] += v
    print(f"offload bytes by codec: {dict(by_codec)}")
    assert sum(by_codec.values()) == sum(r.offload_bytes for r in results.values())
    assert by_codec["jpeg"] == sum(r.offload_bytes for r in results.values() if r.arm == 0)


def panel_expr(title: str) -> str:
    """The committed dashboards' query of the panel ``title``, variables substituted."""
    exprs = [
        e for model in D.load_all().values() for t, _, e in D.panel_queries(model) if t == title
    ]
    assert len(exprs) == 1, (title, exprs)
    expr = exprs[0]
    for var, value in VARIABLES.items():
        expr = expr.replace(var, value)
    return expr


def test_arm_use_panels_show_the_send_frame_arm_from_prometheus(run):
    """The policy dashboard's "Arm choices / s" and the quality dashboard's "Offloads / s per
    arm" return the send-frame arm as ``arm="1"`` (legend "arm 1") from the real Prometheus,
    and the raw counter of this run's edge worker there holds exactly its arm-0 frames."""
    client = PromClient(run["p"].settings.observability.prometheus_url)
    client.wait_ready()
    n0 = sum(1 for r in run["view"].results.values() if r.arm == 0)
    raw = f'sum(splitee_arm_chosen_total{{worker="{run["edge"]}", arm="1"}})'
    panels = {t: panel_expr(t) for t in ("Arm choices / s", "Offloads / s per arm")}
    deadline = time.monotonic() + 45  # file_sd refresh 5 s + two scrapes (5 s) for a rate
    while True:
        shown = {t: {s.labels.get("arm") for s in client.query(e)} for t, e in panels.items()}
        counted = client.scalar(raw, 0.0)
        if (all("1" in arms for arms in shown.values()) and counted == n0) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(2)
    assert counted == n0, (counted, n0)
    for title, arms in shown.items():
        assert "1" in arms, f"{title}: no series for the send-frame arm: {arms}"
        assert "0" not in arms, f"{title}: an arm=0 series: {arms}"
