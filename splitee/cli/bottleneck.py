"""``splitee train-bottleneck``: learned codecs for every split arm of a real-size model."""

from __future__ import annotations

from pathlib import Path

import click

from splitee.cli.options import settings_of


@click.command("train-bottleneck")
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The multi-exit checkpoint whose split tensors the codecs compress (kept frozen).",
)
@click.option("--data", default=None, help="'caltech101' (data.images) or a folder/zip.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--arms", default=None, help="1-based split arms to train, e.g. 1,2 (default all).")
@click.option("--stage1-epochs", type=int, default=None)
@click.option(
    "--stage2-scale",
    type=float,
    default=None,
    help="Scale every arm's distillation budget (BottleneckTrainConfig.stage2_seconds; an "
    "arm already past its scaled budget is not trained further).",
)
@click.option(
    "--stage2-mix",
    type=click.FloatRange(0, 1),
    default=None,
    help="Share of distillation batches cut-mixed and taught on the fly "
    "(BottleneckTrainConfig.stage2_mix; a new value starts a warm run with its own schedule).",
)
@click.option(
    "--scalar-side",
    type=click.IntRange(0, 4096),
    default=None,
    help="Arms whose tensor's side is at most this get the scalar codec, the others a learned "
    "one (BottleneckTrainConfig.scalar_side, default 14; 0: learned everywhere).",
)
@click.option(
    "--factorized",
    is_flag=True,
    help="Code with factorized per-channel tables, not checkerboard contexts "
    "(BottleneckTrainConfig.context; for comparison and for workers older than contexts).",
)
@click.option("--limit", type=int, default=None, help="First N training frames (smoke runs).")
@click.option("--test-limit", type=int, default=None)
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    default=None,
    help="Torch threads (default 2); 1 when pinned to a core of its own beside other work.",
)
@click.option(
    "--cache-only",
    is_flag=True,
    help="Extract the cached views and stop (then train arms in parallel runs, one per core).",
)
@click.pass_context
def train_bottleneck(
    ctx: click.Context,
    model_path: Path,
    data: str | None,
    out: Path | None,
    arms: str | None,
    stage1_epochs: int | None,
    stage2_scale: float | None,
    stage2_mix: float | None,
    scalar_side: int | None,
    factorized: bool,
    limit: int | None,
    test_limit: int | None,
    threads: int | None,
    cache_only: bool,
) -> None:
    """Train (or resume) the bottleneck codecs; write safetensors + model card.

    Resumable: features are cached per view and each arm's state is saved after every epoch
    (and every block of distillation steps) under data.cache_dir/bottleneck; run the same
    command again to continue where it stopped.
    """
    from splitee.cli.backbone_train import jpeg_sizes, resolve_images
    from splitee.files import checkpoint_metadata
    from splitee.images import load_images, open_source
    from splitee.models.backbones import register_from_settings
    from splitee.training.bottleneck import BottleneckTrainConfig, train_bottlenecks

    s = settings_of(ctx)
    register_from_settings(s)
    meta = checkpoint_metadata(model_path)
    if "input_size" not in meta:
        raise click.UsageError(f"{model_path} is not a real-size backbone checkpoint")
    size = int(meta["input_size"])
    path = resolve_images(s, data)
    cache = s.data.cache_dir / "images"
    train_src, test_src = open_source(path, "train"), open_source(path, "test")
    given = {
        k: v
        for k, v in {
            "stage1_epochs": stage1_epochs,
            "stage2_seconds": None
            if stage2_scale is None
            else [t * stage2_scale for t in BottleneckTrainConfig().stage2_seconds],
            "stage2_mix": stage2_mix,
            "scalar_side": scalar_side,
            "context": False if factorized else None,
            "limit": limit,
            "test_limit": test_limit,
            "threads": threads,
            "arms": None if arms is None else [int(a) - 1 for a in arms.split(",")],
        }.items()
        if v is not None
    }
    cfg = BottleneckTrainConfig(**given)
    out = out or model_path.with_name(model_path.stem + "-bottleneck.safetensors")
    card = train_bottlenecks(
        model_path,
        cfg,
        load_images(train_src, size, cache),
        load_images(test_src, size, cache),
        out,
        s.data.cache_dir / "bottleneck",
        jpeg_sizes(test_src),
        cache_only=cache_only,
    )
    if cache_only:
        return
    for arm in card["arms"]:
        best = [f"{r['bytes_median']} B → {r['top1']:.4f}" for r in arm["rates"]]
        click.echo(f"arm {arm['arm']}: " + ", ".join(best))
    click.echo(f"took {card['training']['total_seconds']:.0f} s; wrote {out}")


def _steps(text: str | None) -> tuple[float, ...] | None:
    """``--steps 4,6`` as the rate points' steps (a usage error for anything but numbers)."""
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r}: steps Δ as numbers, e.g. 6 or 4,6") from None


@click.command("tune-bottleneck")
@click.option(
    "--bottleneck",
    "bottleneck_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The bottleneck checkpoint whose decoders to tune (its base model beside it).",
)
@click.option("--data", default=None, help="'caltech101' (data.images) or a folder/zip.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--arms", default="1", show_default=True, help="1-based learned arms, e.g. 1,2.")
@click.option(
    "--seconds",
    type=click.FloatRange(1, 86400),
    default=None,
    help="Training time per arm (DecoderTuneConfig.seconds, default 1,800).",
)
@click.option(
    "--distorted-share",
    type=click.FloatRange(0, 1),
    default=None,
    help="Share of each batch given a random noise or blur (default 0.6).",
)
@click.option(
    "--steps",
    default=None,
    help="Rate points (their steps Δ, e.g. 6) that train; default all. The decoder is shared "
    "by every rate: a tune for the deployed rate spends every step there.",
)
@click.option(
    "--log-levels",
    is_flag=True,
    default=None,
    help="Draw noise and blur levels log-uniformly (as many mild ones as heavy ones).",
)
@click.option("--threads", type=click.IntRange(1, 256), default=None)
@click.pass_context
def tune_bottleneck(
    ctx: click.Context,
    bottleneck_path: Path,
    data: str | None,
    out: Path,
    arms: str,
    seconds: float | None,
    distorted_share: float | None,
    steps: str | None,
    log_levels: bool | None,
    threads: int | None,
) -> None:
    """Tune the cloud-side decoders of a bottleneck on distorted frames (docs/bottleneck.md).

    The encoders, integer latents and coding tables stay byte-identical, so the edge and the
    bytes per frame do not change; the decoder learns to give the suffix the clean frame's
    tensor. Resumable: run the same command again to continue where it stopped.
    """
    import copy

    import torch

    from splitee.cli.backbone_train import resolve_images
    from splitee.images import load_images, open_source
    from splitee.models import load_checkpoint
    from splitee.models.backbones import register_from_settings
    from splitee.models.bottleneck_checkpoint import load_bottlenecks
    from splitee.training.decoder_tune import DecoderTuneConfig, trained_rates, tune_decoders

    s = settings_of(ctx)
    register_from_settings(s)
    bundle = load_bottlenecks(bottleneck_path)
    model = copy.deepcopy(load_checkpoint(bundle.base_path)).fuse_for_inference()
    model.backbone.to(memory_format=torch.channels_last)
    size = int(model.input_size)
    path = resolve_images(s, data)
    cache = s.data.cache_dir / "images"
    given = {
        k: v
        for k, v in {
            "seconds": seconds,
            "distorted_share": distorted_share,
            "steps": _steps(steps),
            "log_levels": log_levels or None,
            "threads": threads,
        }.items()
        if v is not None
    }
    cfg = DecoderTuneConfig(**given)
    try:
        trained_rates(bundle.bottlenecks.steps, cfg.steps)  # every codec has the same
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    train = load_images(open_source(path, "train"), size, cache)
    test = load_images(open_source(path, "test"), size, cache)
    card = tune_decoders(
        model,
        bundle,
        bottleneck_path,
        [int(a) - 1 for a in arms.split(",")],
        train.images,
        test.images,
        test.labels,
        cfg,
        out,
        s.data.cache_dir / "bottleneck-tune",
    )
    for arm in card["arms"]:
        best = [f"{r['bytes_median']} B → {r['top1']:.4f}" for r in arm["rates"]]
        click.echo(f"arm {arm['arm']}: " + ", ".join(best))
    click.echo(f"wrote {out}")
