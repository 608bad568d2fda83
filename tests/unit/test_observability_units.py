"""Observability without servers: evaluator state, exporter metrics, dashboards, Grafana push.

The live checks (every panel's query against a real Prometheus, ``top`` and ``report`` on a
running pipeline) are in test_observability.py.
"""

from __future__ import annotations

import copy
import doctest
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest

from policy_store.policies import ArmStats, make_policy
from splitee.cli import main
from splitee.observability import dashboards as D
from splitee.observability import promapi
from splitee.observability.evaluator import MIN_ARM_FRAMES, EvalCollector, EvalState
from splitee.observability.exporter import ExporterCollector, ExporterState, Lag
from splitee.wire import Result
from tests.conftest import REPO
from tests.grafana_fake import FakeGrafana


def result(fid: str, pred: int, arm: int, where: str = "edge", conf: float = 0.9, cost=0.3):
    return Result(fid, "cam-1", pred, conf, arm, where, 1.0, 2.0, cost=cost).encode()


def truth(label: int, dist: str = "pristine") -> bytes:
    return json.dumps({"label": label, "camera_id": "cam-1", "distortion": dist}).encode()


def scrape(*collectors) -> dict[str, float]:
    reg = CollectorRegistry()
    for c in collectors:
        reg.register(c)
    out = {}
    for line in generate_latest(reg).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


# ---------------------------------------------------------------- evaluator
def test_evaluator_joins_either_order_and_keeps_first_result_per_frame():
    st = EvalState(final_cost=2.7, mu=1.0, window=3, num_arms=9)
    assert st.add_result(result("a", 1, 0)) is None  # waits for its truth
    out = st.add_truth("a", truth(1))
    assert out is not None and out.correct and out.reward == pytest.approx(0.9 - 0.3)
    assert st.add_truth("b", truth(2, "noise:0.1")) is None
    out = st.add_result(result("b", 3, 4, "cloud", conf=0.8, cost=1.5 + 0.5))
    assert out is not None and not out.correct and out.offloaded and out.distortion == "noise:0.1"
    # duplicates: a replayed result of a joined frame, and of a pending one
    assert st.add_result(result("a", 1, 0)) is None
    st.add_result(result("c", 0, 0))
    st.add_result(result("c", 0, 0))
    assert st.duplicates == 2 and st.frames == 2
    st.add_result(b"not json")
    st.add_truth("x", b"{}")
    assert st.bad == 2
    m = scrape(EvalCollector(st))
    assert m['splitee_eval_frames_total{camera="cam-1",distortion="pristine"}'] == 1
    assert m['splitee_eval_correct_total{camera="cam-1",distortion="noise:0.1"}'] == 0
    assert m['splitee_eval_offloaded_total{camera="cam-1",distortion="noise:0.1"}'] == 1
    assert m["splitee_eval_window_accuracy_ratio"] == 0.5
    assert m["splitee_eval_window_cost_reduction_ratio"] == pytest.approx(1 - (0.3 + 2.0) / 2 / 2.7)
    assert m['splitee_eval_pending{kind="results"}'] == 1
    assert m["splitee_eval_duplicate_results_total"] == 2
    assert "splitee_eval_regret" not in m  # no arm has enough frames yet


def test_evaluator_regret_is_the_plug_in_estimate_against_the_best_fixed_arm():
    st = EvalState(final_cost=2.7, mu=1.0, window=100, num_arms=9)
    n = MIN_ARM_FRAMES
    # arm 0: reward 0.9-0.3=0.6 ; arm 2: reward 0.95-0.9=0.05
    for i in range(n):
        st.add_truth(f"a{i}", truth(1))
        st.add_result(result(f"a{i}", 1, 0, conf=0.9, cost=0.3))
        st.add_truth(f"b{i}", truth(1))
        st.add_result(result(f"b{i}", 1, 2, conf=0.95, cost=0.9))
    assert st.best_fixed_arm() == 0
    assert st.regret() == pytest.approx(2 * n * 0.6 - n * (0.6 + 0.05))
    m = scrape(EvalCollector(st))
    assert m["splitee_eval_best_fixed_arm"] == 1  # 1-based in metrics
    assert m["splitee_eval_regret_per_frame"] == pytest.approx((0.6 - 0.05) / 2)
    assert m['splitee_eval_arm_frames_total{arm="3"}'] == n


def test_evaluator_caps_label_values():
    st = EvalState(final_cost=2.7, num_arms=9)
    for i in range(40):
        st.add_truth(f"f{i}", truth(0, f"noise:{i}"))
        st.add_result(result(f"f{i}", 0, 0))
    assert len({d for _, d in st.totals}) == 33  # 32 values + "other"
    assert ("cam-1", "other") in st.totals


# ---------------------------------------------------------------- exporter
def test_exporter_collector_lag_and_policy_state():
    st = ExporterState()
    st.lag = [Lag("g-edge", "frames", 0, 90, 100), Lag("g-edge", "frames", 1, 50, 50)]
    st.members = {"g-edge": ("Stable", 2)}
    stats = ArmStats.zeros(3)
    stats.n[:] = [4, 2, 0]
    stats.s[:] = [2.0, 1.5, 0]
    stats.pulls[:] = [3, 1, 0]
    stats.t = np.array(4.0)
    st.policies = {"global": stats}
    st.record("kafka", True)
    m = scrape(ExporterCollector(st, make_policy("ucb1")))
    lab = 'group="g-edge",partition="0",topic="frames"'
    assert m[f"splitee_kafka_consumer_lag_messages{{{lab}}}"] == 10
    assert m['splitee_kafka_topic_end_offset{partition="1",topic="frames"}'] == 50
    assert m['splitee_kafka_group_members{group="g-edge",state="Stable"}'] == 2
    assert m['splitee_policy_pulls_total{arm="1",policy="global"}'] == 3
    assert m['splitee_policy_mean_reward{arm="2",policy="global"}'] == 0.75
    assert 'splitee_policy_mean_reward{arm="3",policy="global"}' not in m  # never observed
    assert m['splitee_policy_best_arm{policy="global"}'] == 2
    assert m['splitee_policy_ucb_index{arm="1",policy="global"}'] == pytest.approx(
        0.5 + math.sqrt(math.log(4) / 4)
    )
    assert m['splitee_exporter_up{source="kafka"}'] == 1
    assert m['splitee_exporter_up{source="redis"}'] == 0


# ---------------------------------------------------------------- Prometheus client helpers
def test_promapi_doctests_and_errors():
    res = doctest.testmod(promapi)
    assert res.attempted > 0 and res.failed == 0
    with pytest.raises(ValueError, match="not a time"):
        promapi.parse_time("yesterday")
    with pytest.raises(promapi.PromError, match="cannot reach Prometheus"):
        promapi.PromClient("http://127.0.0.1:9", timeout_s=2).query("up")


def test_top_and_report_fail_in_one_line_without_prometheus(tmp_path):
    r = CliRunner().invoke(main, ["top", "--once", "--url", "http://127.0.0.1:9"])
    assert r.exit_code == 1 and r.output.count("\n") == 1
    assert "cannot reach Prometheus" in r.output
    args = ["report", "--since", "5m", "--out", str(tmp_path), "--url", "http://127.0.0.1:9"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "cannot reach Prometheus" in r.output


# ---------------------------------------------------------------- dashboards
def test_committed_dashboards_are_the_builder_output_and_valid():
    built = D.render_all()
    assert D.load_all() == built, "run: splitee dashboards build"
    assert set(built) == {"overview", "policy", "quality"}
    for name, model in built.items():
        assert D.validate(model) == [], name
        assert len(list(D.panel_queries(model))) >= 10
    uids = [m["uid"] for m in built.values()]
    assert len(set(uids)) == len(uids)


def test_validate_catches_what_grafana_rejects():
    model = D.render(D.policy())
    bad = copy.deepcopy(model)
    bad["panels"][1]["id"] = bad["panels"][0]["id"]
    bad["panels"][2]["gridPos"] = dict(bad["panels"][0]["gridPos"])
    bad["panels"][3]["targets"][0]["expr"] = "rate(x[$nope])"
    bad["panels"][4]["datasource"] = {"type": "prometheus", "uid": "other"}
    bad["panels"][5]["gridPos"]["x"] = 20
    bad["panels"][6]["type"] = "graph-old"
    bad["uid"] = "x" * 41
    errs = "\n".join(D.validate(bad))
    for needle in (
        "not unique",
        "overlaps",
        "$nope",
        "datasource must be",
        "wider than",
        "unknown panel type",
        "uid",
    ):
        assert needle in errs


def test_provisioning_files_point_at_the_dashboards_and_the_datasource_uid():
    prov = REPO / "deploy" / "grafana" / "provisioning"
    ds = (prov / "datasources" / "splitee.yaml").read_text()
    assert f"uid: {D.DATASOURCE_UID}" in ds and "type: prometheus" in ds
    dash = (prov / "dashboards" / "splitee.yaml").read_text()
    assert "path: ${SPLITEE_REPO}/deploy/grafana/dashboards" in dash
    assert "folderUid: splitee" in dash
    for model in D.load_all().values():
        for p in D.iter_panels(model):
            assert p["datasource"]["uid"] == D.DATASOURCE_UID


# ---------------------------------------------------------------- push
def push(url: str, *extra: str, token: str = "good-token"):
    return CliRunner().invoke(main, ["dashboards", "push", "--url", url, "--token", token, *extra])


def test_push_creates_then_is_idempotent_then_restores_an_edited_dashboard():
    with FakeGrafana() as g:
        r = push(g.url)
        assert r.exit_code == 0, r.output
        # the listing is on stdout; stderr may hold a log record from another test's leftover
        # thread (a camera's abandoned, stuck Kafka producer retrying in the same process)
        lines = r.stdout.strip().splitlines()
        assert len(lines) == 5 and all(line.endswith("created") for line in lines)
        assert set(g.dashboards) == {"splitee-overview", "splitee-policy", "splitee-quality"}
        assert g.folders["splitee"]["title"] == "splitee"
        assert g.datasources[D.DATASOURCE_UID]["type"] == "prometheus"
        for uid, d in g.dashboards.items():
            assert d["folderUid"] == "splitee"
            assert d["dashboard"]["panels"] == D.render_all()[uid.split("-")[1]]["panels"]

        saves = g.saves()
        r = push(g.url)
        assert r.exit_code == 0 and all(x.endswith("unchanged") for x in r.stdout.splitlines())
        assert g.saves() == saves  # nothing written the second time

        g.dashboards["splitee-quality"]["dashboard"]["title"] = "edited in the UI"
        g.dashboards["splitee-quality"]["dashboard"]["version"] += 1
        r = push(g.url)
        assert r.exit_code == 0 and "splitee / quality" in r.output and "updated" in r.output
        assert g.dashboards["splitee-quality"]["dashboard"]["title"] == "splitee / quality"


def test_push_errors_are_one_readable_line():
    with FakeGrafana() as g:
        r = push(g.url, token="wrong")
        assert r.exit_code == 1
        assert r.output.count("\n") == 1 and "401 Unauthorized" in r.output
        assert "Traceback" not in r.output

        assert push(g.url).exit_code == 0
        g.dashboards["splitee-policy"]["dashboard"]["title"] = "changed"
        g.concurrent_edit = True  # someone saves in the UI between our read and our write
        r = push(g.url)
        assert r.exit_code == 1 and r.output.count("\n") == 1
        assert "412 version mismatch" in r.output and "--overwrite" in r.output

        g.concurrent_edit = True
        r = push(g.url, "--overwrite")
        assert r.exit_code == 0, r.output

    r = push("http://127.0.0.1:9")
    assert r.exit_code == 1 and "cannot reach Grafana" in r.output
    r = CliRunner().invoke(
        main,
        ["dashboards", "push", "--url", "http://127.0.0.1:9"],
        env={"SPLITEE_GRAFANA_TOKEN": ""},
    )
    assert r.exit_code == 1 and "token" in r.output
