"""The ``splitee`` command: one entry point for every role and tool."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from splitee.logs import configure_logging
from splitee.settings import Settings, load_settings


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


@click.group()
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML settings file (else $SPLITEE_CONFIG; environment variables override it).",
)
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """splitee: early-exit inference split between edge and cloud, learned online."""
    try:
        settings = load_settings(config)
    except Exception as exc:  # pydantic's errors already name the field
        raise click.ClickException(f"invalid settings: {exc}") from exc
    configure_logging(settings.log_level)
    ctx.obj = {"settings": settings}


@main.command()
@click.option("--arch", default=None, help="resnet20/32/44/56 (default: model.arch).")
@click.option("--epochs", default=8, show_default=True, type=int)
@click.option("--batch-size", default=256, show_default=True, type=int)
@click.option("--lr", "lr_backbone", default=0.02, show_default=True, type=float)
@click.option("--lr-heads", default=0.1, show_default=True, type=float)
@click.option("--augment-distortions", is_flag=True, help="Train on noisy/blurred frames too.")
@click.option("--limit", default=None, type=int, help="Use only N training frames (smoke run).")
@click.option("--holdout", default=2000, show_default=True, type=int)
@click.option("--test-limit", default=None, type=int, help="Evaluate on N test frames only.")
@click.option("--no-bf16", is_flag=True, help="Train in fp32 (slower on CPU).")
@click.option(
    "--head",
    type=click.Choice(["conv1", "conv2"]),
    default="conv1",
    show_default=True,
    help="Exit head design.",
)
@click.option(
    "--init",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Start from this multi-exit checkpoint instead of the pretrained backbone.",
)
@click.option("--heads-only", is_flag=True, help="Freeze the backbone; train the exits only.")
@click.option(
    "--distill",
    type=float,
    default=0.0,
    show_default=True,
    help="Weight of distillation from the final exit (0..1).",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.pass_context
def train(ctx: click.Context, **opts: object) -> None:
    """Fine-tune backbone and exits; write a safetensors checkpoint and a JSON model card."""
    from splitee.data import load_from_settings
    from splitee.models.checkpoint import resolve_device
    from splitee.train import TrainConfig, summarise
    from splitee.train import train as run_train

    s = _settings(ctx)
    cfg = TrainConfig(
        arch=str(opts["arch"] or s.model.arch),
        exit_every=s.model.exit_every,
        epochs=int(opts["epochs"]),  # type: ignore[arg-type]
        batch_size=int(opts["batch_size"]),  # type: ignore[arg-type]
        lr_backbone=float(opts["lr_backbone"]),  # type: ignore[arg-type]
        lr_heads=float(opts["lr_heads"]),  # type: ignore[arg-type]
        augment_distortions=bool(opts["augment_distortions"]),
        bf16=not opts["no_bf16"],
        holdout=int(opts["holdout"]),  # type: ignore[arg-type]
        seed=int(opts["seed"]),  # type: ignore[arg-type]
        limit=opts["limit"],  # type: ignore[arg-type]
        head=str(opts["head"]),
        init=opts["init"],  # type: ignore[arg-type]
        heads_only=bool(opts["heads_only"]),
        distill=float(opts["distill"]),  # type: ignore[arg-type]
    )
    train_set = load_from_settings("train", s)
    test_set = load_from_settings("test", s)
    if opts["test_limit"]:
        test_set = test_set.subset(int(opts["test_limit"]))  # type: ignore[arg-type]
    out = opts["out"] or s.model.checkpoint
    card = run_train(
        cfg, train_set, test_set, s.model.pretrained_dir, Path(out), resolve_device(s.model.device)
    )
    click.echo(summarise(card))
    click.echo(f"wrote {out}")


@main.command()
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint (default: model.checkpoint).",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Data folder or a JPEG zip (default: data.dir).",
)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--runs", type=int, default=None, help="Random stream orders (default: eval.runs).")
@click.option("--limit", type=int, default=None, help="Use only the first N test frames.")
@click.option("--distortions", default=None, help="Comma list, e.g. pristine,noise:0.1,blur:1.0")
@click.option("--gamma", type=float, default=None)
@click.option("--mu", type=float, default=None)
@click.option("--alpha", type=float, default=None)
@click.option("--o", "offload_cost", type=float, default=None, help="Offload cost o.")
@click.option("--beta", type=float, default=None)
@click.option("--seed", type=int, default=None)
@click.option(
    "--alpha-grid",
    default=None,
    help="Comma list of thresholds: also learn the (arm, α) pair, e.g. 0.5,0.7,0.9",
)
@click.option(
    "--sweep-o", default=None, help="Comma list of offload costs to sweep, e.g. 0.1,0.2,..."
)
@click.pass_context
def evaluate(ctx: click.Context, **o: object) -> None:
    """Offline reproduction: every method replayed over cached exit outputs."""
    from splitee.data import find_source, load_source
    from splitee.evaluate.runner import EvalConfig, model_outputs, run_evaluation, write_outputs

    s = _settings(ctx)
    p = s.policy
    pick = lambda key, default: default if o[key] is None else o[key]  # noqa: E731
    cfg = EvalConfig(
        gamma=pick("gamma", p.gamma),
        mu=pick("mu", p.mu),
        alpha=pick("alpha", p.alpha),
        offload_cost=pick("offload_cost", p.offload_cost),
        beta=pick("beta", p.beta),
        runs=pick("runs", s.eval.runs),
        seed=pick("seed", p.seed),
        sweep_o=[float(v) for v in str(o["sweep_o"]).split(",")] if o["sweep_o"] else [],
        alpha_grid=[float(v) for v in str(o["alpha_grid"]).split(",")] if o["alpha_grid"] else [],
        distortions=str(o["distortions"]).split(",") if o["distortions"] else s.eval.distortions,
    )
    data = Path(o["data_dir"]) if o["data_dir"] else s.data.dir  # type: ignore[arg-type]
    src = data if data is not None and data.suffix == ".zip" else find_source(data, "test")
    dataset = load_source(src, "test", s.data.cache_dir)
    if o["limit"]:
        dataset = dataset.subset(int(o["limit"]))  # type: ignore[arg-type]
    model_path = Path(o["model_path"] or s.model.checkpoint)  # type: ignore[arg-type]
    outputs, info = model_outputs(model_path, dataset, cfg.distortions, cfg.seed, s.data.cache_dir)
    summary = run_evaluation(outputs, info["exit_depths"], cfg)
    summary["model"] = info
    out_dir = Path(o["out_dir"])  # type: ignore[arg-type]
    write_outputs(summary, out_dir)
    click.echo((out_dir / "table.md").read_text())
    click.echo(f"wrote {out_dir}/summary.json, table.md and plots")


@main.group()
def topics() -> None:
    """Create or delete the pipeline's Kafka topics."""


@topics.command("create")
@click.pass_context
def topics_create(ctx: click.Context) -> None:
    """Create every missing topic (partitions and size limits from the settings)."""
    from splitee.kafka_io import create_topics, pipeline_topics

    k = _settings(ctx.parent).kafka  # type: ignore[arg-type]
    made = create_topics(k)
    click.echo(f"topics: {', '.join(sorted(pipeline_topics(k)))} (created: {len(made)})")


@topics.command("delete")
@click.confirmation_option(prompt="Delete every pipeline topic and its data?")
@click.pass_context
def topics_delete(ctx: click.Context) -> None:
    from splitee.kafka_io import delete_topics, pipeline_topics

    k = _settings(ctx.parent).kafka  # type: ignore[arg-type]
    delete_topics(k, pipeline_topics(k))


@main.command("evaluate-shift")
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint (default: model.checkpoint).",
)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--phases",
    default=",".join(("pristine", "noise:0.1", "blur:1.0", "brightness:0.4", "pristine")),
    show_default=True,
)
@click.option("--phase-frames", type=int, default=1000, show_default=True)
@click.option("--cameras", type=int, default=2, show_default=True)
@click.option("--runs", type=int, default=5, show_default=True)
@click.pass_context
def evaluate_shift(
    ctx: click.Context,
    model_path: Path | None,
    out_dir: Path,
    phases: str,
    phase_frames: int,
    cameras: int,
    runs: int,
) -> None:
    """Shift experiment: distortions change every N frames; global vs per-camera policies."""
    from splitee.data import load_from_settings
    from splitee.distortions import Distortion
    from splitee.evaluate.runner import model_outputs
    from splitee.evaluate.shift import ShiftConfig, shift_experiment, write_shift

    s = _settings(ctx)
    p = s.policy
    specs = tuple(str(Distortion.parse(x)) for x in phases.split(","))
    dataset = load_from_settings("test", s)
    mp = Path(model_path or s.model.checkpoint)
    outs, info = model_outputs(mp, dataset, list(dict.fromkeys(specs)), p.seed, s.data.cache_dir)
    cfg = ShiftConfig(
        specs,
        phase_frames,
        cameras,
        runs,
        p.seed,
        discount=p.discount,
        window=p.window,
        beta=p.beta,
    )
    cm_args = {"gamma": p.gamma, "mu": p.mu, "alpha": p.alpha, "offload_cost": p.offload_cost}
    summary = shift_experiment(
        {str(o.distortion): o.outputs for o in outs},
        dataset.labels,
        info["exit_depths"],
        cm_args,
        cfg,
    )
    summary["model"] = info
    write_shift(summary, out_dir)
    click.echo((out_dir / "table.md").read_text())


@main.command()
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
    """Run the configured cameras (one thread each) until their frame counts are sent.

    SIGTERM stops the cameras cleanly: pending frames are flushed, the metrics target removed.
    """
    import signal
    import threading

    from producers.camera import Camera, run_cameras
    from producers.schedule import Schedule
    from producers.sources import load_frames
    from splitee import metrics
    from splitee.kafka_io import producer

    s = _settings(ctx)
    ps = s.producer
    frames = load_frames(ps.source, s)
    prod = producer(s.kafka)
    cams = []
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    metrics.serve(metrics_port)
    metrics.register_target("producer", worker_id, metrics_port)
    for cs in ps.cameras:
        if cameras and cs.id not in cameras:
            continue
        cam = Camera(
            cs.id,
            frames,
            Schedule.parse(cs.schedule, cs.cycle),
            fps or cs.fps,
            cs.order,
            cs.seed,
            ps.jpeg_quality,
            run_id if run_id is not None else ps.run_id,
        )
        cams.append(cam)
    n = ps.count if count is None else count
    sent = run_cameras(cams, prod, s.kafka.frames_topic, s.kafka.truth_topic, n, stop=stop)
    prod.close()
    click.echo(json.dumps({"sent": sent}))


@main.command()
@click.option("--worker-id", default="edge-1", show_default=True)
@click.option("--metrics-port", type=int, default=0, help="Prometheus port (0 = none).")
@click.pass_context
def edge(ctx: click.Context, worker_id: str, metrics_port: int) -> None:
    """Run an edge worker (faust) in the foreground."""
    from edge_workers.app import main as edge_main

    edge_main(_settings(ctx), worker_id, metrics_port)


@main.command()
@click.option("--worker-id", default="cloud-1", show_default=True)
@click.option("--metrics-port", type=int, default=0, help="Prometheus port (0 = none).")
@click.pass_context
def cloud(ctx: click.Context, worker_id: str, metrics_port: int) -> None:
    """Run a cloud worker (faust) in the foreground; CUDA when present."""
    from cloud_workers.app import main as cloud_main

    cloud_main(_settings(ctx), worker_id, metrics_port)


def _store(s: Settings):
    from policy_store.redis_store import RedisStore
    from splitee.models.checkpoint import read_metadata

    arms = len(json.loads(read_metadata(s.model.checkpoint)["exit_depths"]))
    return RedisStore(s.redis.url, s.redis.namespace, arms, 0.0)


@main.group()
def policy() -> None:
    """Inspect and manage the shared policy statistics in Redis."""


@policy.command("show")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def policy_show(ctx: click.Context, as_json: bool) -> None:
    """Pulls, observations and mean reward per arm of every policy."""
    store = _store(_settings(ctx.parent))  # type: ignore[arg-type]
    snap = store.snapshot()
    if as_json:
        click.echo(json.dumps(snap["policies"]))
        return
    if not snap["policies"]:
        click.echo(f"no policies under namespace {store.namespace!r}")
    for name, st in snap["policies"].items():
        click.echo(f"policy {name}: t={st['t']:.0f}")
        click.echo("  arm   pulls  observations  mean reward")
        for a, (p, n, sm) in enumerate(zip(st["pulls"], st["n"], st["s"], strict=True)):
            mean = f"{sm / n:.4f}" if n else "-"
            click.echo(f"  {a + 1:>3} {p:>7.0f} {n:>13.0f} {mean:>12}")


@policy.command("reset")
@click.argument("name", required=False)
@click.pass_context
def policy_reset(ctx: click.Context, name: str | None) -> None:
    """Forget one policy's statistics (or all in the namespace)."""
    store = _store(_settings(ctx.parent))  # type: ignore[arg-type]
    names = [name] if name else store.policies()
    for n in names:
        store.reset(n)
    click.echo(f"reset: {', '.join(names) or 'nothing'}")


@policy.command("snapshot")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def policy_snapshot(ctx: click.Context, file: Path) -> None:
    """Write every policy's statistics to a versioned JSON file."""
    from policy_store.redis_store import save_snapshot

    snap = save_snapshot(_store(_settings(ctx.parent)), file)  # type: ignore[arg-type]
    click.echo(f"wrote {file} ({len(snap['policies'])} policies)")


@policy.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def policy_restore(ctx: click.Context, file: Path) -> None:
    """Replace the namespace's policies with a snapshot's."""
    from policy_store.redis_store import load_snapshot

    try:
        names = _store(_settings(ctx.parent)).restore(load_snapshot(file))  # type: ignore[arg-type]
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"restored: {', '.join(names)}")


@main.command()
@click.option("--expect", type=int, default=0, help="Wait until this many frames have results.")
@click.option("--timeout", type=float, default=120.0, show_default=True)
@click.option("--run-id", default="", help="Only frames of this run id.")
@click.pass_context
def summary(ctx: click.Context, expect: int, timeout: float, run_id: str) -> None:
    """Join results with ground truth and print the run's summary (last line: JSON)."""
    from policy_store.rewards import CostModel
    from splitee.models.checkpoint import read_metadata
    from splitee.results import collect_results, collect_truth, summarize

    s = _settings(ctx)
    truth = collect_truth(s.kafka, timeout_s=min(timeout, 30))
    if run_id:
        truth = {f: t for f, t in truth.items() if t.get("run_id", "") == run_id}
    ids = set(truth) if expect else None
    view = collect_results(s.kafka, ids, timeout, run_id)
    depths = json.loads(read_metadata(s.model.checkpoint)["exit_depths"])
    cm = CostModel(depths, s.policy.gamma, s.policy.mu, s.policy.alpha, s.policy.offload_cost)
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


@main.command("wait-ready")
@click.option("--edge", "n_edge", type=int, default=0, help="Edge workers to wait for.")
@click.option("--cloud", "n_cloud", type=int, default=0, help="Cloud workers to wait for.")
@click.option("--timeout", type=float, default=180.0, show_default=True)
@click.pass_context
def wait_ready(ctx: click.Context, n_edge: int, n_cloud: int, timeout: float) -> None:
    """Wait until the worker consumer groups are stable with every partition assigned."""
    from splitee.kafka_io import wait_groups

    s = _settings(ctx)
    g = s.kafka.group_prefix
    want = {f"{g}-edge": n_edge, f"{g}-cloud": n_cloud}
    try:
        wait_groups(s.kafka, {g: n for g, n in want.items() if n}, timeout)
    except TimeoutError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("workers ready")


@main.command("settings")
@click.option("--markdown", is_flag=True, help="The settings reference as a Markdown table.")
@click.pass_context
def settings_cmd(ctx: click.Context, markdown: bool) -> None:
    """Show the effective settings (or document every field)."""
    from splitee.settings import settings_markdown

    if markdown:
        click.echo(settings_markdown())
    else:
        click.echo(_settings(ctx).model_dump_json(indent=2))


def run() -> None:  # pragma: no cover - console entry
    sys.exit(main())


__all__ = ["main"]


# --------------------------------------------------------------------------- record / replay
class _ShowRecordingWarnings:
    """Print recording warnings (truncated tails …) as one 'warning:' line each on stderr."""

    def __enter__(self) -> None:
        import warnings

        from splitee.recording import RecordingWarning

        self._cm = warnings.catch_warnings(record=True)
        self._caught = self._cm.__enter__()
        warnings.simplefilter("always", RecordingWarning)

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)
        seen: set[str] = set()
        for w in self._caught:
            msg = str(w.message)
            if msg not in seen:
                seen.add(msg)
                click.echo(f"warning: {msg}", err=True)


@main.command()
@click.option(
    "--topics",
    default="frames,truth",
    show_default=True,
    help="Comma list of roles (frames, truth, offload, results) or topic names; "
    "--count counts the first one.",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="New folder.")
@click.option("--duration", type=float, default=None, help="Stop after S seconds.")
@click.option("--count", type=int, default=None, help="Stop after N records of the first topic.")
@click.option("--from-beginning", is_flag=True, help="Start at the topics' first offsets.")
@click.option("--no-progress", is_flag=True)
@click.pass_context
def record(
    ctx: click.Context,
    topics: str,
    out: Path,
    duration: float | None,
    count: int | None,
    from_beginning: bool,
    no_progress: bool,
) -> None:
    """Record Kafka topics into an Arrow IPC recording (until --count, --duration or Ctrl-C)."""
    import signal
    import threading

    from splitee.recording import RecordingError
    from splitee.recording import record as run_record

    def ready() -> None:
        stop = f"{count} records" if count else f"{duration} s" if duration else "Ctrl-C"
        click.echo(f"recording {topics} into {out} (until {stop})", err=True)

    term = threading.Event()  # SIGTERM ends the recording cleanly, like Ctrl-C
    previous = signal.signal(signal.SIGTERM, lambda *_: term.set())
    try:
        with _ShowRecordingWarnings():
            m = run_record(
                _settings(ctx),
                out,
                topics.split(","),
                duration,
                count,
                from_beginning,
                progress=not no_progress,
                stop=term.is_set,
                on_ready=ready,
            )
    except RecordingError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo(
        json.dumps(
            {
                "out": str(out),
                "counts": m.counts,
                "seconds": round(m.seconds, 3),
                "stop_reason": m.stop_reason,
                "bytes": {t.key: t.bytes for t in m.topics},
            }
        )
    )


@main.command()
@click.argument("rec", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--speed", default="1", show_default=True, help="Pace factor, or 'max'.")
@click.option("--loop", "loops", type=int, default=1, show_default=True, help="Play N times.")
@click.option("--run-id", default=None, help="Run id of the replayed frames (default: new).")
@click.option("--restore-policy", is_flag=True, help="Restore the recording's start snapshot.")
@click.option("--offline", is_flag=True, help="No Kafka: A/B the policies on the recording.")
@click.option("--policies", default="isplitee,ucb1", show_default=True, help="Offline only.")
@click.option("--seeds", type=int, default=None, help="Offline: stream orders (eval.runs).")
@click.option("--seed", type=int, default=None, help="Offline: first seed (policy.seed).")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--allow-partial", is_flag=True, help="Read what is readable of a damaged file.")
@click.option("--no-progress", is_flag=True)
@click.pass_context
def replay(ctx: click.Context, rec: Path, **o: object) -> None:
    """Replay a recording into Kafka (paced, with a run id), or --offline through the evaluator."""
    from splitee.recording import RecordingError, open_recording
    from splitee.replay import offline_ab, parse_speed, replay_to_kafka

    s = _settings(ctx)
    try:
        with _ShowRecordingWarnings():
            recording = open_recording(rec, allow_partial=bool(o["allow_partial"]))
            if o["offline"]:
                if not o["out_dir"]:
                    raise click.UsageError("--offline needs --out DIR")
                if o["restore_policy"]:
                    raise click.UsageError("--restore-policy is for replays into Kafka")
                from splitee.evaluate.runner import write_outputs

                summary = offline_ab(
                    s,
                    recording,
                    str(o["policies"]).split(","),
                    int(o["seeds"] or s.eval.runs),  # type: ignore[arg-type]
                    o["seed"],  # type: ignore[arg-type]
                    o["model_path"],  # type: ignore[arg-type]
                )
                out_dir = Path(o["out_dir"])  # type: ignore[arg-type]
                write_outputs(summary, out_dir)
                click.echo((out_dir / "table.md").read_text())
                click.echo(f"wrote {out_dir}/summary.json, table.md and plots")
                return
            stats = replay_to_kafka(
                s,
                recording,
                parse_speed(str(o["speed"])),
                int(o["loops"]),  # type: ignore[arg-type]
                o["run_id"],  # type: ignore[arg-type]
                bool(o["restore_policy"]),
                progress=not o["no_progress"],
            )
    except (RecordingError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(stats.to_dict()))


# ---------------------------------------------------------------- observability (issue 4)
@main.command("evaluator")
@click.option("--worker-id", default="evaluator", show_default=True)
@click.option("--metrics-port", type=int, default=0, help="Prometheus port (0 = none).")
@click.pass_context
def evaluator_cmd(ctx: click.Context, worker_id: str, metrics_port: int) -> None:
    """Join results with ground truth live; export accuracy, cost reduction and regret."""
    from splitee.observability.evaluator import run as run_evaluator

    try:
        run_evaluator(_settings(ctx), worker_id, metrics_port)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command("exporter")
@click.option("--worker-id", default="exporter", show_default=True)
@click.option("--metrics-port", type=int, default=0, help="Prometheus port (0 = none).")
@click.pass_context
def exporter_cmd(ctx: click.Context, worker_id: str, metrics_port: int) -> None:
    """Export Kafka consumer lag and the Redis policy state as Prometheus metrics."""
    from splitee.observability.exporter import run as run_exporter

    try:
        run_exporter(_settings(ctx), worker_id, metrics_port)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc


@main.group()
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

    o = _settings(ctx.parent).observability  # type: ignore[arg-type]
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


@main.command()
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

    o = _settings(ctx).observability
    client = PromClient(url or o.prometheus_url)
    window = rate_window(o.scrape_interval)
    try:
        if as_json:
            click.echo(json.dumps(view.collect(client, window).to_json()))
            return
        view.run(client, window, interval, once, Console())
    except PromError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
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

    from splitee.observability import report as rep
    from splitee.observability.promapi import PromClient, PromError, parse_time

    o = _settings(ctx).observability
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


if __name__ == "__main__":  # python -m splitee.cli
    main()
