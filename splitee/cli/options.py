"""What the command modules share: the settings the group loaded, and common options.

The area modules import this, never the group itself, so :mod:`splitee.cli` can import them
to register their commands without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

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


def given(ctx: click.Context) -> dict[str, Any]:
    """The options the user gave (on the command line or from the environment), by parameter
    name. Commands pass only these to a config's ``from_settings``, so every default lives in
    one place (the settings or the config), never restated by a click option."""
    return {
        name: value
        for name, value in ctx.params.items()
        if ctx.get_parameter_source(name)
        not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
    }


def comma_list(value: str, kind: Callable[[str], Any] = str) -> list[Any]:
    """``"a,b"`` → ``[kind("a"), kind("b")]`` (the CLI's list options)."""
    return [kind(v) for v in value.split(",") if v.strip()]
