"""``splitee record`` and ``splitee replay``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from splitee.cli.options import settings_of


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


@click.command()
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

    from splitee.recorder import record as run_record
    from splitee.recording import RecordingError
    from splitee.worker import runtime

    def ready() -> None:
        stop = f"{count} records" if count else f"{duration} s" if duration else "Ctrl-C"
        click.echo(f"recording {topics} into {out} (until {stop})", err=True)

    # SIGTERM ends the recording cleanly, like Ctrl-C (the file closed, the manifest written)
    with runtime.stop_on_signals(signal.SIGTERM) as term:
        try:
            with _ShowRecordingWarnings():
                m = run_record(
                    settings_of(ctx),
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


@click.command()
@click.argument("rec", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--speed", default="1", show_default=True, help="Pace factor, or 'max'.")
@click.option("--loop", "loops", type=int, default=1, show_default=True, help="Play N times.")
@click.option("--run-id", default=None, help="Run id of the replayed frames (default: new).")
@click.option("--restore-policy", is_flag=True, help="Restore the recording's start snapshot.")
@click.option("--offline", is_flag=True, help="No Kafka: A/B the policies on the recording.")
@click.option("--policies", default="isplitee,ucb1", show_default=True, help="Offline only.")
@click.option("--seeds", type=int, default=None, help="Offline: stream orders (eval.runs).")
@click.option("--seed", type=int, default=None, help="Offline: first seed (policy.seed).")
@click.option(
    "--as-recorded",
    is_flag=True,
    help="Offline: one stream in the recorded order, one bandit across its distortions.",
)
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--allow-partial", is_flag=True, help="Read what is readable of a damaged file.")
@click.option("--no-progress", is_flag=True)
@click.pass_context
def replay(
    ctx: click.Context,
    rec: Path,
    speed: str,
    loops: int,
    run_id: str | None,
    restore_policy: bool,
    offline: bool,
    policies: str,
    seeds: int | None,
    seed: int | None,
    as_recorded: bool,
    model_path: Path | None,
    out_dir: Path | None,
    allow_partial: bool,
    no_progress: bool,
) -> None:
    """Replay a recording into Kafka (paced, with a run id), or --offline through the evaluator."""
    from splitee.recording import RecordingError, open_recording
    from splitee.replay import offline_ab, parse_speed, replay_to_kafka

    s = settings_of(ctx)
    try:
        with _ShowRecordingWarnings():
            recording = open_recording(rec, allow_partial=allow_partial)
            if offline:
                if not out_dir:
                    raise click.UsageError("--offline needs --out DIR")
                if restore_policy:
                    raise click.UsageError("--restore-policy is for replays into Kafka")
                from splitee.evaluate.runner import write_outputs

                summary = offline_ab(
                    s,
                    recording,
                    policies.split(","),
                    seeds or s.eval.runs,
                    seed,
                    model_path,
                    as_recorded,
                )
                write_outputs(summary, out_dir)
                click.echo((out_dir / "table.md").read_text())
                click.echo(f"wrote {out_dir}/summary.json, table.md and plots")
                return
            if as_recorded:
                raise click.UsageError("--as-recorded is for --offline replays")
            stats = replay_to_kafka(
                s,
                recording,
                parse_speed(speed),
                loops,
                run_id,
                restore_policy,
                progress=not no_progress,
            )
    except (RecordingError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(stats.to_dict()))
