"""Link commands: evaluate-channel (transmission decisions over a noisy link)."""

from __future__ import annotations

from pathlib import Path

import click

from splitee.cli.options import comma_list, given, model_option, out_dir_option, settings_of


@click.command("evaluate-channel")
@model_option
@out_dir_option
@click.option(
    "--channel",
    "mode",
    type=click.Choice(["analog", "digital"]),
    default=None,
    help="Transmission (default: channel.mode).",
)
@click.option("--snr", "snrs", default=None, help="Comma list, dB (default: -5,0,5,10,15,20).")
@click.option(
    "--fading",
    type=click.Choice(["none", "rayleigh"]),
    default=None,
    help="none (default): AWGN at each SNR; rayleigh: block fading around it, one block per frame.",
)
@click.option("--arm", type=int, default=None, help="1-based split arm (default: channel.arm).")
@click.option("--limit", type=int, default=4000, show_default=True, help="Test frames (seeded).")
@click.option(
    "--fit-frames",
    type=int,
    default=None,
    help="Of those, frames the TDs are fitted on, never scored (default: 1000).",
)
@click.option("--alpha", type=float, default=None, help="Channel-blind α (default: policy.alpha).")
@click.option("--seed", type=int, default=None, help="Default: 0.")
@click.pass_context
def evaluate_channel(
    ctx: click.Context, model_path: Path | None, out_dir: Path, limit: int, **_: object
) -> None:
    """Transmission decisions over a noisy link: accuracy, transmissions and bytes per SNR."""
    from splitee.data import load_from_settings
    from splitee.evaluate.transmission import (
        ChannelEvalConfig,
        run_channel_evaluation,
        write_channel_outputs,
    )

    s = settings_of(ctx)
    opts = {k: v for k, v in given(ctx).items() if k not in ("model_path", "out_dir", "limit")}
    if "snrs" in opts:
        opts["snrs"] = comma_list(opts["snrs"], float)
    cfg = ChannelEvalConfig.from_settings(s, model_path, **opts)
    data = load_from_settings("test", s)
    if limit:
        data = data.subset(limit, cfg.seed)
    try:
        summary = run_channel_evaluation(model_path or s.model.checkpoint, data, cfg)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    write_channel_outputs(summary, out_dir)
    click.echo((out_dir / "table.md").read_text())
    click.echo(f"wrote {out_dir}/summary.json, table.md, td-learned.json and plots")
