"""The ``splitee`` command: one entry point for every role and tool.

This module builds the group and registers each area's commands (one module per area); the
area modules define plain click commands and never import the group.
"""

from __future__ import annotations

from pathlib import Path

import click

from splitee.cli import (
    bottleneck,
    export,
    link,
    observability,
    offline,
    pipeline,
    policy,
    rate_accuracy,
    recording,
)
from splitee.cli.options import settings_of
from splitee.logs import configure_logging
from splitee.settings import load_settings, settings_markdown


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
    configure_logging(settings.log_level, settings.log_levels)
    if settings.model.backbones:  # a user's backbones: registered once, from these settings
        from splitee.models.backbones import register_from_settings

        register_from_settings(settings)
    ctx.obj = settings


@main.command("settings")
@click.option("--markdown", is_flag=True, help="The settings reference as a Markdown table.")
@click.pass_context
def settings_cmd(ctx: click.Context, markdown: bool) -> None:
    """Show the effective settings (or document every field)."""
    if markdown:
        click.echo(settings_markdown())
    else:
        click.echo(settings_of(ctx).model_dump_json(indent=2))


# Every area's commands (``splitee --help`` lists them alphabetically).
main.add_command(link.evaluate_channel)

main.add_command(observability.evaluator)
main.add_command(observability.exporter)
main.add_command(observability.dashboards)
main.add_command(observability.top)
main.add_command(observability.report)

main.add_command(offline.train)
main.add_command(bottleneck.train_bottleneck)
main.add_command(bottleneck.tune_bottleneck)
main.add_command(offline.evaluate)
main.add_command(offline.evaluate_shift)
main.add_command(rate_accuracy.rate_accuracy)
main.add_command(export.export_cmd)

main.add_command(pipeline.topics)
main.add_command(pipeline.produce)
main.add_command(pipeline.edge)
main.add_command(pipeline.cloud)
main.add_command(pipeline.summary)
main.add_command(pipeline.wait_ready)

main.add_command(policy.policy)

main.add_command(recording.record)
main.add_command(recording.replay)

__all__ = ["main"]
