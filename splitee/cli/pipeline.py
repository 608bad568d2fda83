"""Pipeline commands: topics, cameras, edge and cloud workers, readiness, run summary."""

from __future__ import annotations

import json

import click

from splitee import policy_setup
from splitee.cli.options import settings_of


@click.group()
def topics() -> None:
    """Create or delete the pipeline's Kafka topics."""


@topics.command("create")
@click.pass_context
def topics_create(ctx: click.Context) -> None:
    """Create every missing topic (partitions, size limits and replicas from the settings)."""
    from splitee.kafka_io import create_topics, pipeline_topics

    s = settings_of(ctx)
    k = s.kafka
    rf = s.deploy.replication_factor
    made = create_topics(k, replication=rf)
    click.echo(
        f"topics: {', '.join(sorted(pipeline_topics(k)))} (created: {len(made)}, replicas: {rf})"
    )


@topics.command("delete")
@click.confirmation_option(prompt="Delete every pipeline topic and its data?")
@click.pass_context
def topics_delete(ctx: click.Context) -> None:
    from splitee.kafka_io import delete_topics, pipeline_topics

    k = settings_of(ctx).kafka
    delete_topics(k, pipeline_topics(k))


@click.command()
@click.option("--camera", "cameras", multiple=True, help="Only these camera ids (default: all).")
@click.option("--count", type=int, default=None, help="Frames per camera (0 = endless).")
@click.option("--fps", type=float, default=None, help="Override every camera's frame rate.")
@click.option("--run-id", default=None, help="Tag frames with a run id.")
@click.option("--metrics-port", type=int, default=0, help="Prometheus port (0 = none).")
@click.option("--worker-id", default="producers", show_default=True, help="Metrics target name.")
@click.pass_context
def produce(
    ctx: click.Context,
    cameras: tuple[str, ...],
    count: int | None,
    fps: float | None,
    run_id: str | None,
    metrics_port: int,
    worker_id: str,
) -> None:
    """Run the configured cameras (one thread each) until their frame counts are delivered.

    Prints per camera the frames delivered (acknowledged by the broker; also as ``sent``),
    retried and dropped, and exits 1 if any was dropped. SIGTERM stops the cameras cleanly:
    pending frames are flushed (for at most 10 s), the metrics target removed.
    """
    import functools
    import signal

    from producers.camera import camera_producer, run_cameras
    from producers.fleet import build_cameras
    from producers.sources import load_frames
    from splitee.worker import runtime

    s = settings_of(ctx)
    ps = s.producer
    frames = load_frames(ps.source, s)
    # SIGTERM ends the streams as a finished count would; the previous handler comes back when
    # the command's context closes (a caller running it in-process keeps its own).
    stop = ctx.with_resource(runtime.stop_on_signals(signal.SIGTERM))
    runtime.serve_metrics(s.var_dir, "producer", worker_id, metrics_port, s.deploy.metrics_host)
    specs = [cs for cs in ps.cameras if not cameras or cs.id in cameras]
    # --fps 0 (like no --fps) keeps each camera's own rate
    cams = build_cameras(s, frames, specs, fps=fps or None, run_id=run_id)
    n = ps.count if count is None else count
    new_producer = functools.partial(camera_producer, s.kafka)  # replaced if it gets stuck
    report = run_cameras(
        cams, new_producer, s.kafka.frames_topic, s.kafka.truth_topic, n, stop=stop
    )
    click.echo(json.dumps(report))
    if any(report["dropped"].values()):
        ctx.exit(1)  # frames were lost: say so in the exit status too


#: Tests only (splitee.worker.fault_injection): frames whose id starts with PREFIX make the step
#: raise.
FAIL_ON_FRAME = click.option("--fail-on-frame", metavar="PREFIX", default=None, hidden=True)


@click.command()
@click.option("--worker-id", default="edge-1", show_default=True)
@click.option("--metrics-port", type=int, default=0, help="Prometheus port (0 = none).")
@FAIL_ON_FRAME
@click.pass_context
def edge(ctx: click.Context, worker_id: str, metrics_port: int, fail_on_frame: str | None) -> None:
    """Run an edge worker (faust) in the foreground."""
    from edge_workers.app import main as edge_main

    edge_main(settings_of(ctx), worker_id, metrics_port, fail_on_frame)


@click.command()
@click.option("--worker-id", default="cloud-1", show_default=True)
@click.option("--metrics-port", type=int, default=0, help="Prometheus port (0 = none).")
@FAIL_ON_FRAME
@click.pass_context
def cloud(ctx: click.Context, worker_id: str, metrics_port: int, fail_on_frame: str | None) -> None:
    """Run a cloud worker (faust) in the foreground; CUDA when present."""
    from cloud_workers.app import main as cloud_main

    cloud_main(settings_of(ctx), worker_id, metrics_port, fail_on_frame)


@click.command()
@click.option("--expect", type=int, default=0, help="Wait until this many frames have results.")
@click.option("--timeout", type=float, default=120.0, show_default=True)
@click.option("--run-id", default="", help="Only frames of this run id.")
@click.pass_context
def summary(ctx: click.Context, expect: int, timeout: float, run_id: str) -> None:
    """Join results with ground truth and print the run's summary (last line: JSON)."""
    from splitee.files import exit_depths
    from splitee.results import collect_results, collect_truth, summarize

    s = settings_of(ctx)
    truth = collect_truth(s.kafka, timeout_s=min(timeout, 30))
    if run_id:
        truth = {f: t for f, t in truth.items() if t.get("run_id", "") == run_id}
    ids = set(truth) if expect else None
    view = collect_results(s.kafka, ids, timeout, run_id)
    depths = exit_depths(s.model.checkpoint)
    cm = policy_setup.cost_model(s, depths)
    out = summarize(view.results, truth, cm.final_cost)
    out["duplicates_dropped"] = view.duplicates
    out["missing"] = len(set(truth) - set(view.results))
    click.echo(f"frames            {out.get('frames', 0)} (missing {out['missing']})")
    if out.get("frames"):
        click.echo(f"accuracy          {100 * out['accuracy']:.2f} %")
        click.echo(f"cost reduction    {100 * out['cost_reduction']:.2f} % (vs final exit)")
        click.echo(f"offloaded         {100 * out['offload_fraction']:.2f} %")
        click.echo(f"arms chosen       {out['arms']}")
        click.echo(
            f"latency p50/p99   {out['latency_p50_s'] * 1000:.1f} / "
            f"{out['latency_p99_s'] * 1000:.1f} ms (capture to result)"
        )
    click.echo(json.dumps(out))


@click.command("wait-ready")
@click.option("--edge", "n_edge", type=int, default=0, help="Edge workers to wait for.")
@click.option("--cloud", "n_cloud", type=int, default=0, help="Cloud workers to wait for.")
@click.option("--timeout", type=float, default=180.0, show_default=True)
@click.pass_context
def wait_ready(ctx: click.Context, n_edge: int, n_cloud: int, timeout: float) -> None:
    """Wait until the worker consumer groups are stable with every partition assigned."""
    from splitee.kafka_io import wait_groups

    s = settings_of(ctx)
    g = s.kafka.group_prefix
    want = {f"{g}-edge": n_edge, f"{g}-cloud": n_cloud}
    try:
        wait_groups(s.kafka, {g: n for g, n in want.items() if n}, timeout)
    except TimeoutError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("workers ready")
