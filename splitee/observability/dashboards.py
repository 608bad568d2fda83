"""The Grafana dashboards, built with grafanalib, and a check against Grafana's JSON model.

Three dashboards answer an operator's and a researcher's questions about a running deployment:

* **overview** - is it keeping up? throughput per role and camera, end-to-end and per-stage
  latency percentiles, batch sizes, consumer lag, dead letters, targets up;
* **policy** - what is the bandit doing? arm choices over time, the split each camera uses,
  pulls and mean reward per arm (from Redis), UCB indices, rewards, estimated regret;
* **quality** - is it any good? accuracy, cost reduction against the final exit, exit and
  offload rates per arm, all of it per distortion phase.

The JSON files under ``deploy/grafana/dashboards/`` are generated from this module
(``splitee dashboards build``) and a test keeps them identical. grafanalib builds the model;
:func:`validate` additionally checks what Grafana itself requires of a dashboard (ids, grid,
datasource references, query references, template variables), since no Grafana server can run
in CI.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import attr
from grafanalib import core as G
from grafanalib._gen import DashboardEncoder

from splitee.observability import queries as Q

DATASOURCE_UID = "splitee-prometheus"
DATASOURCE_NAME = "splitee Prometheus"
DS = {"type": "prometheus", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39  # Grafana 10/11; the panels below use the current (fieldConfig) model
W = Q.GRAFANA_WINDOW
DASHBOARDS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
#: Panel types of Grafana's core plugins that these dashboards may use.
PANEL_TYPES = {"timeseries", "stat", "row", "text", "bargauge", "table"}
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s"}
THRESHOLDS = [{"color": "green", "value": None}]

Targets = list[tuple[str, str]]  # (expr, legend)


def _targets(items: Targets) -> list[G.Target]:
    return [
        G.Target(
            expr=expr,
            legendFormat=legend,
            refId=chr(ord("A") + i),
            datasource=DS,
            intervalFactor=1,
            step=None,
        )
        for i, (expr, legend) in enumerate(items)
    ]


def ts(
    title: str,
    items: Targets,
    unit: str = "short",
    description: str = "",
    stack: bool = False,
    interpolation: str = "linear",
) -> G.TimeSeries:
    """A time series panel (position set by :func:`_layout`)."""
    return G.TimeSeries(
        title=title,
        description=description,
        dataSource=DS,
        targets=_targets(items),
        unit=unit,
        fillOpacity=30 if stack else 10,
        stacking={"mode": "normal", "group": "A"} if stack else {"mode": "none"},
        lineInterpolation=interpolation,
        legendDisplayMode="list",
        tooltipMode="multi",
        thresholds=THRESHOLDS,
    )


def stat(title: str, items: Targets, unit: str = "short", description: str = "") -> G.Stat:
    """A stat panel: one number per series (its last value)."""
    return G.Stat(
        title=title,
        description=description,
        dataSource=DS,
        targets=_targets(items),
        format=unit,
        reduceCalc="lastNotNull",
        graphMode="area",
        textMode="value_and_name" if len(items) > 1 or "by (" in items[0][0] else "value",
        thresholds=THRESHOLDS,
        noValue="no data",
    )


def _layout(rows: list[tuple[int, list[G.Panel]]]) -> list[G.Panel]:
    """Place panels left to right in rows of the given height, widths shared equally."""
    out: list[G.Panel] = []
    y = 0
    for height, panels in rows:
        w = 24 // len(panels)
        for i, p in enumerate(panels):
            out.append(attr.evolve(p, gridPos=G.GridPos(h=height, w=w, x=i * w, y=y)))
        y += height
    return out


def _dashboard(uid: str, title: str, description: str, panels: list[G.Panel], templating=None):
    return G.Dashboard(
        title=title,
        uid=uid,
        description=description,
        tags=["splitee"],
        timezone="browser",
        refresh="10s",
        time=G.Time("now-30m", "now"),
        schemaVersion=SCHEMA_VERSION,
        graphTooltip=G.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        templating=templating or G.Templating(),
        panels=panels,
    ).auto_panel_ids()


def overview() -> G.Dashboard:
    rows = [
        (
            5,
            [
                stat("Results / s", [(Q.results_rate(W), "")], "ops"),
                stat("End-to-end p99", [(Q.e2e_quantile(0.99, W), "")], "s"),
                stat("Consumer lag", [(Q.LAG_TOTAL, "{{group}}")], "short"),
                stat("Targets up", [(Q.TARGETS_UP, "{{role}}")], "short"),
            ],
        ),
        (
            8,
            [
                ts(
                    "Frames in / out per role",
                    [
                        (Q.frames_in(W), "in {{role}}"),
                        (Q.frames_out(W), "out {{role}} ({{where}})"),
                    ],
                    "ops",
                    "Records consumed and results produced per second, per role",
                ),
                ts(
                    "Frames sent per camera",
                    [(Q.frames_sent(W), "{{camera}}")],
                    "ops",
                    "What the cameras push into Kafka",
                    stack=True,
                ),
            ],
        ),
        (
            8,
            [
                ts(
                    "End-to-end latency (capture to result)",
                    [
                        (Q.e2e_quantile(0.5, W), "p50"),
                        (Q.e2e_quantile(0.9, W), "p90"),
                        (Q.e2e_quantile(0.99, W), "p99"),
                    ],
                    "s",
                ),
                ts(
                    "Stage latency p95 (per batch)",
                    [(Q.stage_quantile(0.95, W), "{{stage}}")],
                    "s",
                    "decode, policy_read, edge_compute, edge_encode, produce, cloud_decode, "
                    "cloud_compute",
                ),
            ],
        ),
        (
            8,
            [
                ts(
                    "Where a frame's latency goes: p50 per stage",
                    [(Q.latency_stage_quantile(0.5, W), "{{stage}}")],
                    "s",
                    "Per frame: queue (capture → consumed at the edge), edge (→ result or "
                    "offload sent), offload_hop (→ consumed by the cloud), cloud (→ result), "
                    "result_hop (→ read by the evaluator)",
                ),
                ts(
                    "Where a frame's latency goes: p99 per stage",
                    [(Q.latency_stage_quantile(0.99, W), "{{stage}}")],
                    "s",
                ),
            ],
        ),
        (
            8,
            [
                ts(
                    "Consumer lag per group and topic",
                    [(Q.LAG_BY_GROUP, "{{group}} {{topic}}")],
                    "short",
                    "End offset minus committed offset (splitee exporter)",
                ),
                ts("Mean batch size", [(Q.batch_mean(W), "{{role}}")], "short"),
                ts("Offloaded bytes / s", [(Q.offload_bytes(W), "{{codec}}")], "Bps"),
            ],
        ),
        (
            7,
            [
                ts(
                    "Dead letters / s by reason",
                    [(Q.dead_letters(W), "{{role}} {{reason}}")],
                    "ops",
                ),
                stat(
                    "Dead letters since start",
                    [(Q.DEAD_LETTERS_TOTAL, "{{role}} {{reason}}")],
                    "short",
                ),
            ],
        ),
        *uplink_rows(),
    ]
    return _dashboard(
        "splitee-overview",
        "splitee / pipeline overview",
        "Throughput, latency percentiles, consumer lag and dead letters",
        _layout(rows),
    )


def uplink_rows() -> list[tuple[int, list[G.Panel]]]:
    """The row "uplink": what crosses the edge site's uplink, how full it is, and what the
    frames wait for it (docs/uplink/): the saving of split computing where users feel it."""
    return [
        (1, [G.RowPanel(title="uplink", dataSource=DS)]),
        (
            8,
            [
                ts(
                    "Uplink bytes / s by arm and codec",
                    [(Q.uplink_bytes(W), "arm {{arm}} {{codec}}")],
                    "Bps",
                    "Offload records the edge puts on its uplink, payload and headers (arm 1 "
                    "with the send-frame arm on: the camera's JPEG)",
                    stack=True,
                ),
                ts(
                    "Share of the uplink in use",
                    [(Q.uplink_share(W), "offloads")],
                    "percentunit",
                    "Offload bits / s over the configured link rate (policy.uplink_mbps); "
                    "near 1 the link is full and the offload hop queues",
                ),
            ],
        ),
        (
            8,
            [
                ts(
                    "Offload hop latency (edge send → cloud consume)",
                    [
                        (Q.offload_hop_quantile(0.5, W), "p50"),
                        (Q.offload_hop_quantile(0.99, W), "p99"),
                    ],
                    "s",
                    "Per frame: the uplink's time, the broker's and the cloud's fetch wait",
                ),
                ts(
                    "Uplink rate: configured and measured",
                    [(Q.UPLINK_RATE, "{{source}}")],
                    "bps",
                    "policy.uplink_mbps, and the cloud's live estimate with offload_cost_mode "
                    "= latency and uplink_rate = measured (it prices the offloads' rewards)",
                ),
            ],
        ),
    ]


def camera_variable() -> G.Template:
    var = G.Template(
        name="camera",
        label="camera",
        query="label_values(splitee_current_arm, camera)",
        dataSource=DS,
        includeAll=True,
        multi=True,
        allValue=".*",
        default="$__all",
        refresh=G.REFRESH_ON_TIME_RANGE_CHANGE,
    )
    var._current = {"selected": True, "text": ["All"], "value": ["$__all"]}  # multi-value "All"
    return var


def policy() -> G.Dashboard:
    cam = "$camera"
    rows = [
        (
            5,
            [
                stat("Regret vs best fixed arm", [(Q.REGRET, "")], "short"),
                stat("Regret per frame", [(Q.REGRET_PER_FRAME, "")], "short"),
                stat("Best fixed arm (results)", [(Q.BEST_FIXED_ARM, "")], "none"),
                stat("Best arm (policy)", [(Q.POLICY_BEST_ARM, "{{policy}}")], "none"),
            ],
        ),
        (
            8,
            [
                ts(
                    "Arm choices / s",
                    [(Q.arm_choice(W, cam), "arm {{arm}}")],
                    "ops",
                    "Split arm chosen per frame (edge workers), cameras from $camera. Arms are "
                    "1-based as in the tables; with the send-frame arm (policy.send_frame_arm, "
                    "on with offload_cost_mode = bytes) arm 1 sends the camera's JPEG.",
                    stack=True,
                ),
                ts(
                    "Chosen split per camera",
                    [(Q.current_arm(cam), "{{camera}}")],
                    "none",
                    "Last arm (1-based) an edge worker chose for the camera",
                    interpolation="stepAfter",
                ),
            ],
        ),
        (
            8,
            [
                ts(
                    "Pulls per arm (policy store)",
                    [(Q.POLICY_PULLS, "arm {{arm}}")],
                    "short",
                    "Decisions recorded in Redis (splitee exporter)",
                ),
                ts(
                    "Mean reward per arm (policy store)",
                    [(Q.POLICY_MEAN_REWARD, "{{policy}} arm {{arm}}")],
                    "short",
                    "What the bandit believes, side observations included",
                ),
                ts(
                    "UCB index per arm",
                    [(Q.POLICY_UCB, "{{policy}} arm {{arm}}")],
                    "short",
                    "The next frame goes to the arm with the largest index",
                ),
            ],
        ),
        (
            8,
            [
                ts(
                    "Median reward applied per arm",
                    [(Q.reward_quantile(0.5, W), "arm {{arm}}")],
                    "short",
                    "Rewards the workers fold into the policy (side observations included)",
                ),
                ts(
                    "Estimated regret",
                    [(Q.REGRET, "cumulative"), (Q.REGRET_PER_FRAME, "per frame")],
                    "short",
                    "Plug-in estimate from the rewards implied by results (splitee evaluator)",
                ),
                ts(
                    "Policy decisions / s",
                    [(Q.policy_frames(W), "{{policy}}")],
                    "ops",
                ),
            ],
        ),
    ]
    return _dashboard(
        "splitee-policy",
        "splitee / policy",
        "Arm pulls over time, chosen split per camera, rewards and regret",
        _layout(rows),
        G.Templating([camera_variable()]),
    )


def quality() -> G.Dashboard:
    rows = [
        (
            5,
            [
                stat("Accuracy (window)", [(Q.WINDOW_ACCURACY, "")], "percentunit"),
                stat("Cost reduction (window)", [(Q.WINDOW_COST_REDUCTION, "")], "percentunit"),
                stat("Offloaded (window)", [(Q.WINDOW_OFFLOAD, "")], "percentunit"),
                stat("Final-exit cost", [(Q.FINAL_EXIT_COST, "")], "short"),
            ],
        ),
        (
            8,
            [
                ts(
                    "Accuracy",
                    [(Q.WINDOW_ACCURACY, "window"), (Q.accuracy_by_camera(W), "{{camera}}")],
                    "percentunit",
                    "Sliding window of the evaluator, and per camera over the rate window",
                ),
                ts(
                    "Cost per frame vs final exit",
                    [(Q.cost_per_frame(W), "mean cost"), (Q.FINAL_EXIT_COST, "final exit")],
                    "short",
                ),
                ts(
                    "Offload fraction",
                    [(Q.offload_fraction(W), "all"), (Q.WINDOW_OFFLOAD, "window")],
                    "percentunit",
                ),
            ],
        ),
        (
            8,
            [
                ts("Exits / s per arm", [(Q.exits_by_arm(W), "arm {{arm}}")], "ops", stack=True),
                ts(
                    "Offloads / s per arm",
                    [(Q.offloads_by_arm(W), "arm {{arm}}")],
                    "ops",
                    "Offloads per split arm (1-based; with the send-frame arm, arm 1 is the "
                    "JPEG sent whole).",
                    stack=True,
                ),
            ],
        ),
        (
            7,
            [
                stat(
                    "Accuracy per distortion phase",
                    [(Q.ACCURACY_BY_PHASE, "{{distortion}}")],
                    "percentunit",
                ),
                stat(
                    "Cost reduction per distortion phase",
                    [(Q.COST_REDUCTION_BY_PHASE, "{{distortion}}")],
                    "percentunit",
                ),
                stat(
                    "Offloaded per distortion phase",
                    [(Q.OFFLOAD_BY_PHASE, "{{distortion}}")],
                    "percentunit",
                ),
            ],
        ),
        (
            8,
            [
                ts(
                    "Accuracy per distortion phase over time",
                    [(Q.accuracy_by_phase_rate(W), "{{distortion}}")],
                    "percentunit",
                ),
                ts(
                    "Frames sent per camera and phase",
                    [(Q.sent_by_phase(W), "{{camera}} {{distortion}}")],
                    "ops",
                    "Which distortion phase each camera is in",
                    stack=True,
                ),
            ],
        ),
    ]
    return _dashboard(
        "splitee-quality",
        "splitee / quality",
        "Accuracy, exit and offload rates, cost reduction, per distortion phase",
        _layout(rows),
    )


BUILDERS = {"overview": overview, "policy": policy, "quality": quality}


def render(dash: G.Dashboard) -> dict:
    """The dashboard as Grafana's JSON model (plain dicts and lists)."""
    return json.loads(json.dumps(dash.to_json_data(), cls=DashboardEncoder))


def render_all() -> dict[str, dict]:
    return {name: render(build()) for name, build in BUILDERS.items()}


def dump(model: dict) -> str:
    return json.dumps(model, indent=2, sort_keys=True) + "\n"


def write_all(out_dir: Path = DASHBOARDS_DIR) -> list[Path]:
    """Write every dashboard as ``<name>.json`` (what Grafana file provisioning reads)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, model in render_all().items():
        path = out_dir / f"{name}.json"
        path.write_text(dump(model))
        paths.append(path)
    return paths


def load_all(src_dir: Path = DASHBOARDS_DIR) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(src_dir.glob("*.json"))}


def iter_panels(model: dict) -> Iterator[dict]:
    """Every panel, those nested in collapsed rows included."""
    for p in model.get("panels", []):
        yield p
        yield from p.get("panels", []) or []


def panel_queries(model: dict) -> Iterator[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query of every panel."""
    for p in iter_panels(model):
        for t in p.get("targets", []) or []:
            yield p.get("title", ""), t.get("refId", ""), t.get("expr", "")


_VAR = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
_UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def validate(model: dict) -> list[str]:
    """Problems that would make Grafana reject or misrender the dashboard (empty = none).

    Checks the parts of Grafana's dashboard JSON model these dashboards rely on: uid/title,
    schemaVersion, time range, unique integer panel ids, known panel types, gridPos inside the
    24-column grid without overlaps, the Prometheus datasource reference on panels and
    queries, unique non-empty refIds with an expression, fieldConfig/options objects, and
    that every ``$variable`` used in a query is defined in ``templating``.
    """
    errs: list[str] = []
    title = model.get("title")
    if not isinstance(title, str) or not title:
        errs.append("dashboard has no title")
    if not isinstance(model.get("uid"), str) or not _UID.match(model["uid"]):
        errs.append(f"uid {model.get('uid')!r}: 1-40 of [A-Za-z0-9_-]")
    if not isinstance(model.get("schemaVersion"), int) or model["schemaVersion"] < 30:
        errs.append("schemaVersion must be an integer >= 30 for fieldConfig panels")
    t = model.get("time", {})
    if not (
        isinstance(t, dict) and isinstance(t.get("from"), str) and isinstance(t.get("to"), str)
    ):
        errs.append("time must be {from, to}")
    variables = set()
    for v in model.get("templating", {}).get("list", []):
        if not (isinstance(v, dict) and v.get("name") and v.get("type")):
            errs.append(f"template variable without name/type: {v!r}")
            continue
        variables.add(v["name"])
        if v.get("datasource") not in (None, DS):
            errs.append(f"variable {v['name']}: datasource must be {DS}")
    ids: set[int] = set()
    cells: dict[tuple[int, int], str] = {}
    for p in iter_panels(model):
        name = f"panel {p.get('title')!r}"
        pid = p.get("id")
        if not isinstance(pid, int) or pid in ids:
            errs.append(f"{name}: id {pid!r} missing or not unique")
        ids.add(pid)
        if p.get("type") not in PANEL_TYPES:
            errs.append(f"{name}: unknown panel type {p.get('type')!r}")
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in "hwxy"):
            errs.append(f"{name}: gridPos needs integer h, w, x, y")
            continue
        if not (g["h"] >= 1 and 1 <= g["w"] <= 24 and g["x"] >= 0 and g["y"] >= 0):
            errs.append(f"{name}: gridPos {g} out of range")
        if g["x"] + g["w"] > 24:
            errs.append(f"{name}: gridPos {g} wider than the 24-column grid")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    errs.append(f"{name}: overlaps {cells[(x, y)]}")
                    break
                cells[(x, y)] = name
            else:
                continue
            break
        if p.get("type") in ("row", "text"):
            continue
        if p.get("datasource") != DS:
            errs.append(f"{name}: datasource must be {DS}")
        if not isinstance(p.get("fieldConfig", {}).get("defaults"), dict):
            errs.append(f"{name}: fieldConfig.defaults must be an object")
        steps = p.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps")
        if steps is not None and not isinstance(steps, list):
            errs.append(f"{name}: thresholds.steps must be a list")
        if not isinstance(p.get("options"), dict):
            errs.append(f"{name}: options must be an object")
        targets = p.get("targets") or []
        if not targets:
            errs.append(f"{name}: no queries")
        refs = set()
        for tgt in targets:
            ref = tgt.get("refId")
            if not ref or ref in refs:
                errs.append(f"{name}: refId {ref!r} missing or repeated")
            refs.add(ref)
            expr = tgt.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                errs.append(f"{name} {ref}: empty expr")
                continue
            if tgt.get("datasource") != DS:
                errs.append(f"{name} {ref}: datasource must be {DS}")
            for m in _VAR.finditer(expr):
                var = m.group(1) or m.group(2)
                if var not in variables and var not in BUILTIN_VARIABLES:
                    errs.append(f"{name} {ref}: ${var} is not a dashboard variable")
    return errs
