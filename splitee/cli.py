"""The ``splitee`` command: one entry point for every role and tool."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from splitee.logs import configure_logging
from splitee.settings import Settings, load_settings


def settings_of(ctx: click.Context) -> Settings:
    """The settings loaded by the ``splitee`` group (every command reads them from here)."""
    return ctx.obj["settings"]


_settings = settings_of

# Options several commands share.
model_option = click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint (default: model.checkpoint).",
)
out_dir_option = click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True
)


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


__all__ = ["main", "settings_of"]

# Register every area's commands on ``main`` (each module decorates them onto the group).
from splitee.commands import (  # noqa: E402, F401
    channel,
    observability,
    offline,
    pipeline,
    policy,
    recording,
)

if __name__ == "__main__":  # python -m splitee.cli
    # Run the importable module's group: the command modules registered themselves on it.
    from splitee.cli import main as registered_main

    registered_main()
