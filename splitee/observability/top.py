"""``splitee top``: the key numbers of a running deployment in the terminal, refreshed in place.

For when there is no Grafana at hand (an SSH session on the edge box): the same PromQL as
the dashboards (:mod:`splitee.observability.queries`) against Prometheus's HTTP API, laid out
as four small tables - pipeline, quality, cameras, arms - plus the scrape targets.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from splitee.observability import queries as Q
from splitee.observability.promapi import PromClient, PromError, Series

#: (key, label, query builder taking the rate window, format)
HEADLINE: list[tuple[str, str, object, str]] = [
    ("results_per_s", "results / s", Q.results_rate, "{:.1f}"),
    ("e2e_p50_s", "end-to-end p50", lambda w: Q.e2e_quantile(0.5, w), "ms"),
    ("e2e_p99_s", "end-to-end p99", lambda w: Q.e2e_quantile(0.99, w), "ms"),
    ("accuracy", "accuracy (window)", lambda w: Q.WINDOW_ACCURACY, "%"),
    ("cost_reduction", "cost reduction (window)", lambda w: Q.WINDOW_COST_REDUCTION, "%"),
    ("offloaded", "offloaded (window)", lambda w: Q.WINDOW_OFFLOAD, "%"),
    ("regret", "regret vs best fixed arm", lambda w: Q.REGRET, "{:.1f}"),
    ("regret_per_frame", "regret per frame", lambda w: Q.REGRET_PER_FRAME, "{:.4f}"),
    ("best_fixed_arm", "best fixed arm", lambda w: Q.BEST_FIXED_ARM, "{:.0f}"),
    ("dead_letters", "dead letters", lambda w: f"sum({Q.DEAD_LETTERS_TOTAL})", "{:.0f}"),
]


@dataclass
class Snapshot:
    """One reading of everything ``top`` shows (also its ``--json`` output)."""

    taken_at: float
    window: str
    headline: dict[str, float] = field(default_factory=dict)
    roles: dict[str, dict[str, float]] = field(default_factory=dict)
    lag: dict[str, float] = field(default_factory=dict)
    cameras: dict[str, dict[str, float]] = field(default_factory=dict)
    arms: dict[str, dict[str, float]] = field(default_factory=dict)
    targets: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict:
        clean = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
        return {
            "taken_at": self.taken_at,
            "window": self.window,
            "headline": {k: clean(v) for k, v in self.headline.items()},
            "roles": self.roles,
            "lag": self.lag,
            "cameras": self.cameras,
            "arms": self.arms,
            "targets": self.targets,
        }


def _by(series: list[Series], label: str) -> dict[str, float]:
    return {s.labels.get(label, "?"): s.value for s in series}


def _merge(into: dict[str, dict[str, float]], key: str, values: dict[str, float]) -> None:
    for name, v in values.items():
        into.setdefault(name, {})[key] = v


def collect(client: PromClient, window: str) -> Snapshot:
    """Query Prometheus once for every number of the view."""
    snap = Snapshot(time.time(), window)
    for key, _, build, _ in HEADLINE:
        res = client.query(build(window))  # type: ignore[operator]
        snap.headline[key] = res[0].value if res else math.nan
    _merge(snap.roles, "in_per_s", _by(client.query(Q.frames_in(window)), "role"))
    _merge(snap.roles, "targets_up", _by(client.query(Q.TARGETS_UP), "role"))
    _merge(snap.roles, "mean_batch", _by(client.query(Q.batch_mean(window)), "role"))
    snap.lag = _by(client.query(Q.LAG_TOTAL), "group")
    _merge(snap.cameras, "sent_per_s", _by(client.query(Q.frames_sent(window)), "camera"))
    _merge(snap.cameras, "arm", _by(client.query(Q.current_arm()), "camera"))
    _merge(snap.cameras, "accuracy", _by(client.query(Q.accuracy_by_camera(window)), "camera"))
    _merge(snap.arms, "chosen_per_s", _by(client.query(Q.arm_choice(window)), "arm"))
    _merge(snap.arms, "policy_pulls", _by(client.query(Q.POLICY_PULLS), "arm"))
    _merge(
        snap.arms,
        "mean_reward",
        _by(client.query("max by (arm) (splitee_policy_mean_reward)"), "arm"),
    )
    for t in client.targets():
        lab = t.get("labels", {})
        if lab.get("job") != "splitee":
            continue
        snap.targets.append(
            {
                "worker": lab.get("worker", "?"),
                "role": lab.get("role", "?"),
                "health": t.get("health", "?"),
                "error": t.get("lastError", ""),
            }
        )
    snap.targets.sort(key=lambda t: (t["role"], t["worker"]))
    return snap


def _fmt(v: float | None, how: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if how == "ms":
        return f"{1000 * v:.1f} ms"
    if how == "%":
        return f"{100 * v:.1f} %"
    return how.format(v)


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    t = Table(title=title, title_justify="left", expand=False, pad_edge=False)
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right")
    for r in rows or [["-"] * len(columns)]:
        t.add_row(*r)
    return t


def render(snap: Snapshot, url: str) -> Group:
    """The view of one snapshot."""
    head = _table(
        "pipeline and quality",
        ["metric", "value"],
        [[label, _fmt(snap.headline.get(key), how)] for key, label, _, how in HEADLINE],
    )
    roles = _table(
        "roles",
        ["role", "frames in / s", "targets up", "mean batch"],
        [
            [
                r,
                _fmt(v.get("in_per_s"), "{:.1f}"),
                _fmt(v.get("targets_up"), "{:.0f}"),
                _fmt(v.get("mean_batch"), "{:.1f}"),
            ]
            for r, v in sorted(snap.roles.items())
        ],
    )
    lag = _table(
        "consumer lag",
        ["group", "messages"],
        [[g, f"{v:.0f}"] for g, v in sorted(snap.lag.items())],
    )
    cams = _table(
        "cameras",
        ["camera", "sent / s", "current arm", "accuracy"],
        [
            [
                c,
                _fmt(v.get("sent_per_s"), "{:.1f}"),
                _fmt(v.get("arm"), "{:.0f}"),
                _fmt(v.get("accuracy"), "%"),
            ]
            for c, v in sorted(snap.cameras.items())
        ],
    )
    arms = _table(
        "arms",
        ["arm", "chosen / s", "policy pulls", "mean reward"],
        [
            [
                a,
                _fmt(v.get("chosen_per_s"), "{:.2f}"),
                _fmt(v.get("policy_pulls"), "{:.0f}"),
                _fmt(v.get("mean_reward"), "{:+.3f}"),
            ]
            for a, v in sorted(
                snap.arms.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0
            )
        ],
    )
    targets = _table(
        "scrape targets",
        ["worker", "role", "health"],
        [[t["worker"], t["role"], t["health"]] for t in snap.targets],
    )
    stamp = time.strftime("%H:%M:%S", time.localtime(snap.taken_at))
    header = Text(f"splitee top - {url} - {stamp} - rate window {snap.window}", style="bold")
    grid = Table.grid(padding=(0, 3))
    grid.add_row(head, Group(roles, lag, targets))
    grid.add_row(cams, arms)
    return Group(header, grid)


def run(
    client: PromClient, window: str, interval_s: float, once: bool, console: Console
) -> Snapshot:
    """Show the view once, or refresh it in place every ``interval_s`` until Ctrl-C."""
    snap = collect(client, window)
    if once:
        console.print(render(snap, client.url))
        return snap
    with Live(render(snap, client.url), console=console, screen=False, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval_s)
                try:
                    snap = collect(client, window)
                    view = render(snap, client.url)
                except PromError as exc:  # keep the last numbers, say why they are old
                    view = Group(render(snap, client.url), Text(str(exc), style="bold red"))
                live.update(view, refresh=True)
        except KeyboardInterrupt:
            pass
    return snap
