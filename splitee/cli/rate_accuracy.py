"""``splitee rate-accuracy``: top-1 against bytes per frame, for every way to send a frame."""

from __future__ import annotations

import json
from pathlib import Path

import click

from splitee.cli.options import settings_of

DEFAULT_MODEL = Path("assets/efficientnet-lite0-caltech101.safetensors")


@click.command("rate-accuracy")
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=DEFAULT_MODEL,
    show_default=True,
    help="The real-size multi-exit checkpoint (unsplit model and split suffixes).",
)
@click.option("--data", default=None, help="'caltech101' (data.images, the default) or a path.")
@click.option(
    "--bottleneck",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Bottleneck checkpoint or its .card.json: the learned codecs' rate points.",
)
@click.option(
    "--eval-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="An evaluation's output folder: the policies from <dir>/bottleneck/summary.json.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("docs/caltech101"),
    show_default=True,
)
@click.option("--limit", type=int, default=None, help="A seeded random subset of N test frames.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --limit's subset.")
@click.option("--threads", type=int, default=2, show_default=True)
@click.pass_context
def rate_accuracy(
    ctx: click.Context,
    model_path: Path,
    data: str | None,
    bottleneck: Path | None,
    eval_dir: Path | None,
    out_dir: Path,
    limit: int | None,
    seed: int,
    threads: int,
) -> None:
    """Draw rate_accuracy.png (+ .md table, .json) in --out: JPEG qualities of the 224-px
    frame, raw split tensors, learned bottlenecks and the learned policies.

    The forward passes are cached under data.cache_dir/rate_accuracy (per model, frames and
    measurement), so a rerun — with a new card or evaluation — takes seconds.
    """
    from splitee.cli.backbone_train import resolve_images
    from splitee.evaluate.rate_accuracy import (
        bottleneck_points,
        load_frames,
        measure,
        policy_points,
        write_rate_accuracy,
    )
    from splitee.files import checkpoint_metadata
    from splitee.models.backbones import register_from_settings

    try:
        import zstandard  # noqa: F401  (the raw int8 tensors under zstd)
    except ImportError:
        raise click.ClickException(
            "splitee rate-accuracy needs zstandard: pip install 'splitee[dev]'"
        ) from None
    s = settings_of(ctx)
    register_from_settings(s)
    meta = checkpoint_metadata(model_path)
    if "input_size" not in meta:
        raise click.UsageError(f"{model_path} is not a real-size backbone checkpoint")
    card = None
    if bottleneck is not None:
        card_path = (
            bottleneck if bottleneck.suffix == ".json" else bottleneck.with_suffix(".card.json")
        )
        if not card_path.is_file():
            raise click.UsageError(f"no model card at {card_path}")
        card = json.loads(card_path.read_text())
    summary = None
    if eval_dir is not None:
        summary_path = eval_dir / "bottleneck" / "summary.json"
        if not summary_path.is_file():
            raise click.UsageError(f"no {summary_path}: run splitee evaluate with a bottleneck")
        summary = json.loads(summary_path.read_text())

    frames = load_frames(
        resolve_images(s, data), int(meta["input_size"]), s.data.cache_dir, limit, seed
    )
    result = measure(model_path, frames, s.data.cache_dir, threads=threads)
    if card is not None:
        result["bottleneck"] = bottleneck_points(card)
        result["bottleneck_card"] = str(bottleneck)
        result["bottleneck_frames"] = card.get("training", {}).get("test_frames")
    if summary is not None:
        result["policies"] = policy_points(summary)
        result["eval_dir"] = str(eval_dir)
    paths = write_rate_accuracy(result, out_dir)
    click.echo(paths[1].read_text())
    click.echo("wrote " + ", ".join(str(p) for p in paths))
