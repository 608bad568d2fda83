"""What the command modules share: the settings the group loaded, and common options.

The area modules import this, never the group itself, so :mod:`splitee.cli` can import them
to register their commands without an import cycle.
"""

from __future__ import annotations

from pathlib import Path

import click

from splitee.settings import Settings


def settings_of(ctx: click.Context) -> Settings:
    """The settings loaded by the ``splitee`` group (every command reads them from here).

    Found on the nearest context that holds them, so commands of nested groups
    (``splitee policy show``) get them the same way as top-level ones.
    """
    settings = ctx.find_object(Settings)
    if settings is None:
        raise click.UsageError("no settings loaded: run the command through the splitee group")
    return settings


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
