"""Link commands: evaluate-channel (transmission decisions over a noisy link)."""

from __future__ import annotations

from pathlib import Path

import click

from splitee import policy_setup
from splitee.cli.options import model_option, out_dir_option, settings_of


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
@click.option("--snr", default="-5,0,5,10,15,20", show_default=True, help="Comma list, dB.")
@click.option(
    "--fading",
    type=click.Choice(["none", "rayleigh"]),
    default="none",
    show_default=True,
    help="none: AWGN at each SNR; rayleigh: block fading around it, one block per frame.",
)
@click.option("--arm", type=int, default=None, help="1-based split arm (default: channel.arm).")
@click.option("--limit", type=int, default=4000, show_default=True, help="Test frames (seeded).")
@click.option(
    "--fit-frames",
    type=int,
    default=1000,
    show_default=True,
    help="Of those, frames the TDs are fitted on (never scored).",
)
@click.option("--alpha", type=float, default=None, help="Channel-blind α (default: policy.alpha).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_context
def evaluate_channel(
    ctx: click.Context,
    model_path: Path | None,
    out_dir: Path,
    mode: str | None,
    snr: str,
    fading: str,
    arm: int | None,
    limit: int,
    fit_frames: int,
    alpha: float | None,
    seed: int,
) -> None:
    """Transmission decisions over a noisy link: accuracy, transmissions and bytes per SNR."""
    from splitee.data import load_from_settings
    from splitee.evaluate.transmission import (
        ChannelEvalConfig,
        run_channel_evaluation,
        write_channel_outputs,
    )

    s = settings_of(ctx)
    ch = s.channel
    cfg = ChannelEvalConfig(
        arm=arm or ch.arm,
        mode=mode or ch.mode,
        snrs=[float(v) for v in snr.split(",")],
        fading=fading,
        alpha=policy_setup.alpha(s, model_path) if alpha is None else alpha,
        fit_frames=fit_frames,
        penalty=ch.td_penalty,
        bits=ch.bits,
        outage_snr_db=ch.outage_snr_db,
        retries=ch.retries,
        symbol_rate=ch.symbol_rate,
        seed=seed,
    )
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
