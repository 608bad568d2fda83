"""``splitee train --backbone NAME --data DATA``: exits for a pretrained backbone on real frames."""

from __future__ import annotations

from pathlib import Path

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
    settings: Settings,
    backbone: str,
    data: str | None,
    epochs: int,
    limit: int | None,
    test_limit: int | None,
    seed: int,
    out: Path | None,
    finetune_tail: bool = False,
) -> None:
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
    cfg = BackboneTrainConfig(
        backbone=backbone,
        epochs=epochs,
        seed=seed,
        limit=limit,
        test_limit=test_limit,
        finetune_tail=finetune_tail,
    )
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
) -> None:
    """``splitee evaluate`` for a registered backbone's checkpoint on real-size frames."""
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
    outputs, info = model_outputs(
        model_path, dataset, cfg.distortions, cfg.seed, settings.data.cache_dir
    )
    model = load_checkpoint(model_path)
    results = evaluate_real(outputs, info, model, sizes, cfg, out_dir, settings.edge.codec)
    for name, _summary in results.items():
        sub = out_dir if name == "split-arms" else out_dir / "send-frame"
        click.echo(f"## {name}\n" + (sub / "table.md").read_text())
    click.echo(f"wrote {out_dir}/ (summary.json, table.md, plots) and {out_dir}/send-frame/")
