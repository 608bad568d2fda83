"""``splitee train --backbone NAME --data DATA``: exits for a pretrained backbone on real frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np

from splitee.settings import Settings


def resolve_images(settings: Settings, data: str | None) -> Path:
    """``caltech101`` or nothing: the data.images setting; anything else: a path."""
    if data in (None, "caltech101"):
        if settings.data.images is None:
            raise click.UsageError(
                "no image data: set data.images (SPLITEE_DATA__IMAGES) to Caltech-101 or a "
                "folder/zip with one sub-folder of JPEGs per class, or pass --data PATH"
            )
        return settings.data.images
    return Path(data)


def jpeg_sizes(source) -> np.ndarray:
    """Bytes of every JPEG of a source, as stored (what a camera sends)."""
    return np.array([len(b) for _, b, _ in source.iter_bytes()])


def train_backbone_command(
    settings: Settings, backbone: str, data: str | None, out: Path | None, **given: Any
) -> None:
    """Train ``backbone``'s exits; ``given``: the BackboneTrainConfig fields the user gave."""
    from splitee.images import load_images, open_source
    from splitee.models.backbones import get, register_from_settings
    from splitee.training.train_backbone import BackboneTrainConfig, train_backbone

    register_from_settings(settings)
    entry = get(backbone)
    path = resolve_images(settings, data)
    cache = settings.data.cache_dir / "images"
    train_src, test_src = open_source(path, "train"), open_source(path, "test")
    train_set = load_images(train_src, entry.input_size, cache)
    test_set = load_images(test_src, entry.input_size, cache)
    cfg = BackboneTrainConfig(backbone=backbone, **given)
    out = out or Path(f"{backbone}.safetensors")
    card = train_backbone(
        cfg,
        train_set,
        test_set,
        out,
        settings.data.cache_dir,
        jpeg_sizes(test_src),
        settings.model.backbone_weights,
    )
    acc = card["exit_accuracy"]["pristine"]
    click.echo(f"exit accuracy (test, pristine): {acc}")
    click.echo(f"training took {card['training']['total_seconds']:.0f} s; wrote {out}")


def evaluate_backbone(
    settings: Settings,
    cfg,
    model_path: Path,
    data: Path | None,
    limit: int | None,
    out_dir: Path,
    bottleneck: Path | None = None,
) -> None:
    """``splitee evaluate`` for a registered backbone's checkpoint on real-size frames; with
    a ``bottleneck`` checkpoint, a third evaluation through its codecs (``<out>/bottleneck``)."""
    import torch

    from splitee.evaluate.real_frames import evaluate_real, load_test_frames
    from splitee.evaluate.runner import model_outputs
    from splitee.files import checkpoint_metadata
    from splitee.models import load_checkpoint
    from splitee.models.backbones import register_from_settings

    register_from_settings(settings)
    torch.set_num_threads(2)
    size = int(checkpoint_metadata(model_path)["input_size"])
    path = resolve_images(settings, None if data is None else str(data))
    dataset, sizes = load_test_frames(path, size, settings.data.cache_dir)
    if limit:
        keep = np.sort(np.random.default_rng(0).permutation(len(dataset))[:limit])
        dataset = dataset.subset(limit)
        sizes = sizes[keep]
    cache = settings.data.cache_dir
    if bottleneck is not None:
        from splitee.evaluate.bottleneck import evaluate_bottleneck, shared_pass
        from splitee.files import sha256_file
        from splitee.models.bottleneck_checkpoint import load_bottlenecks
        from splitee.models.latent_codec import choose_rates

        bundle = load_bottlenecks(bottleneck, base_path=model_path)
        rates = choose_rates(bundle, settings.model.bottleneck_max_drop)
        fused = load_checkpoint(model_path, fuse=True)
        bn_sha = sha256_file(bottleneck)
        # one pass through the trunk per setting fills the edge's and the codec's caches
        shared_pass(fused, bundle, rates, dataset.images, cfg, cache, model_path, bn_sha)
    outputs, info = model_outputs(model_path, dataset, cfg.distortions, cfg.seed, cache)
    model = load_checkpoint(model_path)
    results = evaluate_real(outputs, info, model, sizes, cfg, out_dir, settings.edge.codec)
    subs = {"split-arms": out_dir, "send-frame": out_dir / "send-frame"}
    if bottleneck is not None:
        results["bottleneck"] = evaluate_bottleneck(
            outputs,
            info,
            fused,
            bundle,
            rates,
            dataset.images,
            sizes,
            cfg,
            out_dir / "bottleneck",
            cache,
            bn_sha,
        )
        subs["bottleneck"] = out_dir / "bottleneck"
    for name in results:
        click.echo(f"## {name}\n" + (subs[name] / "table.md").read_text())
    click.echo(f"wrote {', '.join(str(p) for p in subs.values())} (summary.json, table.md, plots)")
