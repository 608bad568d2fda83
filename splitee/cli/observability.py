"""Observability commands: evaluator, exporter, dashboards, top, report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from splitee.cli.options import settings_of


@click.command("evaluator")
@click.option("--worker-id", default="evaluator", show_default=True)
@click.option("--metrics-port", type=int, default=0, help="Prometheus port (0 = none).")
@click.pass_context
def evaluator(ctx: click.Context, worker_id: str, metrics_port: int) -> None:
    """Join results with ground truth live; export accuracy, cost reduction and regret."""
    from splitee.observability.evaluator import run as run_evaluator

    try:
        run_evaluator(settings_of(ctx), worker_id, metrics_port)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("exporter")
@click.option("--worker-id", default="exporter", show_default=True)
@click.option("--metrics-port", type=int, default=0, help="Prometheus port (0 = none).")
@click.pass_context
def exporter(ctx: click.Context, worker_id: str, metrics_port: int) -> None:
    """Export Kafka consumer lag and the Redis policy state as Prometheus metrics."""
    from splitee.observability.exporter import run as run_exporter

    try:
        run_exporter(settings_of(ctx), worker_id, metrics_port)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def dashboards() -> None:
    """Grafana dashboards: generate the JSON files, or push them to a Grafana."""


@dashboards.command("build")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder (default: deploy/grafana/dashboards).",
)
def dashboards_build(out_dir: Path | None) -> None:
    """Write every dashboard as Grafana JSON (what file provisioning reads)."""
    from splitee.observability import dashboards as d

    for name, model in d.render_all().items():
        problems = d.validate(model)
        if problems:
            raise click.ClickException(f"dashboard {name}: {problems[0]}")
    for path in d.write_all(out_dir or d.DASHBOARDS_DIR):
        click.echo(f"wrote {path}")


@dashboards.command("push")
@click.option("--url", required=True, help="Grafana, e.g. http://127.0.0.1:3000")
@click.option(
    "--token", envvar="SPLITEE_GRAFANA_TOKEN", default=None, help="Service account token."
)
@click.option("--basic", default=None, help="USER:PASSWORD instead of a token.")
@click.option("--prometheus-url", default=None, help="Datasource URL (default: settings).")
@click.option("--overwrite", is_flag=True, help="Replace dashboards changed in Grafana meanwhile.")
@click.pass_context
def dashboards_push(
    ctx: click.Context,
    url: str,
    token: str | None,
    basic: str | None,
    prometheus_url: str | None,
    overwrite: bool,
) -> None:
    """Create or update the folder, the Prometheus datasource and every dashboard."""
    from splitee.observability import dashboards as d
    from splitee.observability.grafana import PushError, push

    o = settings_of(ctx).observability
    try:
        steps = push(
            url,
            d.render_all(),
            prometheus_url or o.prometheus_url,
            o.scrape_interval,
            o.grafana_folder,
            token=token,
            basic=basic,
            overwrite=overwrite,
        )
    except PushError as exc:
        raise click.ClickException(str(exc)) from None
    for step in steps:
        click.echo(str(step))


@click.command()
@click.option("--url", default=None, help="Prometheus (default: observability.prometheus_url).")
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@click.option("--json", "as_json", is_flag=True, help="With --once: the numbers as JSON.")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Refresh seconds.")
@click.pass_context
def top(ctx: click.Context, url: str | None, once: bool, as_json: bool, interval: float) -> None:
    """Live view of a running deployment (from Prometheus), refreshed in place."""
    from rich.console import Console

    from splitee.observability import top as view
    from splitee.observability.promapi import PromClient, PromError, rate_window

    o = settings_of(ctx).observability
    client = PromClient(url or o.prometheus_url)
    window = rate_window(o.scrape_interval)
    try:
        if as_json:
            click.echo(json.dumps(view.collect(client, window).to_json()))
            return
        view.run(client, window, interval, once, Console())
    except PromError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.option("--since", required=True, help="Start: a duration ago (30m), unix seconds or ISO.")
@click.option("--until", default=None, help="End (default: now), same forms.")
@click.option("--step", type=float, default=None, help="Seconds between points (default: auto).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--url", default=None, help="Prometheus (default: observability.prometheus_url).")
@click.pass_context
def report(
    ctx: click.Context,
    since: str,
    until: str | None,
    step: float | None,
    out_dir: Path,
    url: str | None,
) -> None:
    """PNG charts of a run (throughput, latency, arms, quality per phase) and an index."""
    import time

    from splitee.observability import charts as rep
    from splitee.observability.promapi import PromClient, PromError, parse_time

    o = settings_of(ctx).observability
    now = time.time()
    try:
        start = parse_time(since, now)
        end = parse_time(until, now) if until else now
        index = rep.build(
            PromClient(url or o.prometheus_url), start, end, out_dir, o.scrape_interval, step
        )
    except (ValueError, PromError) as exc:
        raise click.ClickException(str(exc)) from None
    series = [s for c in index["charts"] for s in c["series"]]
    empty = sum(1 for s in series if not s["points"])
    click.echo(
        f"wrote {len(index['charts'])} charts ({len(series)} series, {empty} empty) "
        f"and {out_dir / 'index.md'}"
    )
