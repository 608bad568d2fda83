"""``splitee report``: PNG charts of a run from Prometheus, with a markdown and a JSON index.

Dashboards are for watching; a report is for keeping: after an experiment, the same
questions (throughput, latency, which arms were chosen, accuracy and cost per distortion
phase) answered as files that go into a lab notebook or a pull request. Every chart is drawn
from Prometheus's HTTP API with ``query_range`` (curves; the per-phase bars show each
series' last value in the range, so a report made after the run stopped still has them),
with the PromQL of :mod:`splitee.observability.queries`.
``index.json`` lists, per chart, every series drawn and how many points it had, so a script
(or a test) can tell an empty chart from a full one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from splitee.observability import queries as Q
from splitee.observability.promapi import PromClient, Series, parse_duration, rate_window


@dataclass(frozen=True)
class Curve:
    """One query drawn as lines; ``legend`` names the labels that tell its series apart."""

    query: Callable[[str], str]
    legend: tuple[str, ...] = ()
    prefix: str = ""


@dataclass(frozen=True)
class Axes:
    title: str
    curves: tuple[Curve, ...]
    unit: str = ""
    bars: bool = False  # one bar per series: its last value in the range
    stacked: bool = False


@dataclass(frozen=True)
class Chart:
    name: str
    title: str
    axes: tuple[Axes, ...]


def _const(expr: str) -> Callable[[str], str]:
    return lambda w: expr


CHARTS: tuple[Chart, ...] = (
    Chart(
        "throughput",
        "Throughput",
        (
            Axes(
                "frames / s per role",
                (
                    Curve(Q.frames_in, ("role",), "in "),
                    Curve(Q.frames_out, ("role", "where"), "out "),
                ),
                "frames/s",
            ),
            Axes("frames sent / s per camera", (Curve(Q.frames_sent, ("camera",)),), "frames/s"),
        ),
    ),
    Chart(
        "latency",
        "Latency",
        (
            Axes(
                "end to end (capture to result)",
                (
                    Curve(lambda w: Q.e2e_quantile(0.5, w), (), "p50"),
                    Curve(lambda w: Q.e2e_quantile(0.9, w), (), "p90"),
                    Curve(lambda w: Q.e2e_quantile(0.99, w), (), "p99"),
                ),
                "s",
            ),
            Axes(
                "stage p95 (per batch)",
                (Curve(lambda w: Q.stage_quantile(0.95, w), ("stage",)),),
                "s",
            ),
        ),
    ),
    Chart(
        "arms",
        "Arm choice over time",
        (
            Axes(
                "arm choices / s",
                (Curve(Q.arm_choice, ("arm",), "arm "),),
                "frames/s",
                stacked=True,
            ),
            Axes("current arm per camera", (Curve(_const(Q.current_arm()), ("camera",)),), "arm"),
        ),
    ),
    Chart(
        "phases",
        "Accuracy and cost per distortion phase",
        (
            Axes(
                "accuracy per phase",
                (Curve(_const(Q.ACCURACY_BY_PHASE), ("distortion",)),),
                "",
                bars=True,
            ),
            Axes(
                "cost reduction per phase (vs final exit)",
                (Curve(_const(Q.COST_REDUCTION_BY_PHASE), ("distortion",)),),
                "",
                bars=True,
            ),
            Axes(
                "accuracy per phase over time",
                (Curve(Q.accuracy_by_phase_rate, ("distortion",)),),
                "",
            ),
        ),
    ),
    Chart(
        "quality",
        "Windowed quality and regret",
        (
            Axes(
                "evaluator window",
                (
                    Curve(_const(Q.WINDOW_ACCURACY), (), "accuracy"),
                    Curve(_const(Q.WINDOW_COST_REDUCTION), (), "cost reduction"),
                    Curve(_const(Q.WINDOW_OFFLOAD), (), "offloaded"),
                ),
                "ratio",
            ),
            Axes(
                "estimated regret vs best fixed arm", (Curve(_const(Q.REGRET), (), "regret"),), ""
            ),
        ),
    ),
    Chart(
        "lag",
        "Consumer lag",
        (Axes("messages behind", (Curve(_const(Q.LAG_TOTAL), ("group",)),), "messages"),),
    ),
)


@dataclass
class Drawn:
    """What a chart shows, for the index."""

    name: str
    title: str
    file: str
    series: list[dict] = field(default_factory=list)


def _name(s: Series, curve: Curve) -> str:
    lab = s.label(*curve.legend) if curve.legend else ""
    return (curve.prefix + (lab if lab != "{}" else "")).strip() or "value"


def _finite(s: Series) -> list[tuple[float, float]]:
    return [(t, v) for t, v in s.points if math.isfinite(v)]


def _with_gaps(pts: list[tuple[float, float]], step: float) -> tuple[list[float], list[float]]:
    """Points with a NaN wherever no sample came for over two steps, so lines break there."""
    xs: list[float] = []
    ys: list[float] = []
    for t, v in pts:
        if xs and t - xs[-1] > 2.5 * step:
            xs.append(xs[-1] + step)
            ys.append(math.nan)
        xs.append(t)
        ys.append(v)
    return xs, ys


def draw(
    client: PromClient, chart: Chart, start: float, end: float, step: float, window: str, out: Path
) -> Drawn:
    from datetime import datetime

    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(len(chart.axes), 1, figsize=(10, 3.2 * len(chart.axes)), squeeze=False)
    drawn = Drawn(chart.name, chart.title, f"{chart.name}.png")
    for ax, spec in zip(axs[:, 0], chart.axes, strict=True):
        ax.set_title(spec.title, fontsize=10, loc="left")
        ax.set_ylabel(spec.unit)
        any_data = False
        if spec.bars:
            names, values = [], []
            for curve in spec.curves:
                expr = curve.query(window)
                # the last value in the range: the run may have stopped before ``end``
                found = client.query_range(expr, start, end, step)
                for s in sorted(found, key=lambda s: _name(s, curve)):
                    pts = _finite(s)
                    drawn.series.append(
                        {
                            "axes": spec.title,
                            "name": _name(s, curve),
                            "query": expr,
                            "points": len(pts),
                        }
                    )
                    if pts:
                        names.append(_name(s, curve))
                        values.append(pts[-1][1])
            if values:
                any_data = True
                bars = ax.bar(names, values, color="tab:blue")
                ax.bar_label(bars, fmt="%.3f", fontsize=8)
                ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        else:
            stacked: list[tuple[str, list[tuple[float, float]]]] = []
            for curve in spec.curves:
                expr = curve.query(window)
                found = client.query_range(expr, start, end, step)
                for s in sorted(found, key=lambda s: _name(s, curve)):
                    pts = _finite(s)
                    drawn.series.append(
                        {
                            "axes": spec.title,
                            "name": _name(s, curve),
                            "query": expr,
                            "points": len(pts),
                        }
                    )
                    if not pts:
                        continue
                    any_data = True
                    if spec.stacked:
                        stacked.append((_name(s, curve), pts))
                    else:
                        xs, ys = _with_gaps(pts, step)
                        ax.plot(
                            [datetime.fromtimestamp(t) for t in xs],
                            ys,
                            label=_name(s, curve),
                            linewidth=1.2,
                        )
            if stacked:  # on the union of timestamps, a series missing at a time adds 0
                grid = sorted({t for _, pts in stacked for t, _ in pts})
                ys = [[dict(pts).get(t, 0.0) for t in grid] for _, pts in stacked]
                xs = [datetime.fromtimestamp(t) for t in grid]
                ax.stackplot(xs, ys, labels=[n for n, _ in stacked])
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
            if any_data:
                ax.legend(fontsize=7, loc="upper left", ncols=4)
        if not any_data:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.grid(alpha=0.3)
    fig.suptitle(chart.title)
    fig.tight_layout()
    fig.savefig(out / drawn.file, dpi=90)
    plt.close(fig)
    return drawn


def auto_step(start: float, end: float, scrape_interval: str) -> float:
    """About 300 points per curve, never finer than the scrape interval."""
    return max(parse_duration(scrape_interval), (end - start) / 300.0)


def build(
    client: PromClient,
    start: float,
    end: float,
    out: Path,
    scrape_interval: str = "5s",
    step: float | None = None,
) -> dict:
    """Draw every chart into ``out``; write ``index.md`` and ``index.json``; return the index."""
    if end <= start:
        raise ValueError("the report's start must be before its end")
    out.mkdir(parents=True, exist_ok=True)
    step = step or auto_step(start, end, scrape_interval)
    window = rate_window(scrape_interval)
    if parse_duration(window) < 2 * step:
        window = f"{math.ceil(2 * step)}s"
    charts = [draw(client, c, start, end, step, window, out) for c in CHARTS]
    index = {
        "prometheus": client.url,
        "start": start,
        "end": end,
        "step_s": step,
        "rate_window": window,
        "created": time.time(),
        "charts": [
            {"name": d.name, "title": d.title, "file": d.file, "series": d.series} for d in charts
        ],
    }
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    (out / "index.md").write_text(markdown(index))
    return index


def markdown(index: dict) -> str:
    """A small markdown index: the range, then every chart with the series it drew."""
    fmt = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))  # noqa: E731
    lines = [
        "# splitee run report",
        "",
        f"From {fmt(index['start'])} to {fmt(index['end'])}, step {index['step_s']:.1f} s, "
        f"rate window {index['rate_window']}, Prometheus {index['prometheus']}.",
        "",
    ]
    for c in index["charts"]:
        lines += [f"## {c['title']}", "", f"![{c['title']}]({c['file']})", ""]
        lines += ["| panel | series | points |", "|---|---|---|"]
        lines += [f"| {s['axes']} | {s['name']} | {s['points']} |" for s in c["series"]]
        if not c["series"]:
            lines.append("| - | no data | 0 |")
        lines.append("")
    return "\n".join(lines)
