"""``splitee policy``: the shared bandit statistics in Redis."""

from __future__ import annotations

import json
from pathlib import Path

import click

from policy_store.redis_store import RedisStore
from splitee import policy_setup
from splitee.cli.options import settings_of
from splitee.settings import Settings


def _store(s: Settings) -> RedisStore:
    """The policy store of the settings, read uncached (the CLI wants Redis' current state)."""
    return policy_setup.store(s, policy_setup.split_arms(s), cache_ms=0.0)


@click.group()
def policy() -> None:
    """Inspect and manage the shared policy statistics in Redis."""


@policy.command("show")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def policy_show(ctx: click.Context, as_json: bool) -> None:
    """Pulls, observations and mean reward per arm of every policy."""
    store = _store(settings_of(ctx))
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
    store = _store(settings_of(ctx))
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

    snap = save_snapshot(_store(settings_of(ctx)), file)
    click.echo(f"wrote {file} ({len(snap['policies'])} policies)")


@policy.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def policy_restore(ctx: click.Context, file: Path) -> None:
    """Replace the namespace's policies with a snapshot's."""
    from policy_store.redis_store import load_snapshot

    try:
        names = _store(settings_of(ctx)).restore(load_snapshot(file))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"restored: {', '.join(names)}")
