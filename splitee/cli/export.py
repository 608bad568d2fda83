"""``splitee export``: a checkpoint's edge and cloud graphs as ONNX, for ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import click

from splitee.cli.options import settings_of

#: labelled frames the int8 graphs' per-exit accuracy is reported on (the shipped samples)
SAMPLES = {False: "cifar10-sample.zip", True: "caltech101-sample.zip"}


@click.command("export")
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The multi-exit checkpoint (safetensors).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for the graphs and manifest.json (edge.onnx_dir).",
)
@click.option(
    "--bottleneck",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Learned bottleneck of the model: its arms' graphs code integer latents.",
)
@click.option("--int8", is_flag=True, help="Also int8 edge graphs (static quantization).")
@click.option(
    "--calibration",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Frames to calibrate int8 on (default: the training split, data.dir or data.images).",
)
@click.option("--calibration-frames", type=int, default=256, show_default=True)
@click.pass_context
def export_cmd(
    ctx: click.Context,
    model_path: Path,
    out: Path,
    bottleneck: Path | None,
    int8: bool,
    calibration: Path | None,
    calibration_frames: int,
) -> None:
    """Write per split arm an edge graph (frames → exits and the offload) and a cloud graph
    (offload → final logits), and manifest.json; the last line is a JSON summary."""
    from splitee.files import checkpoint_metadata
    from splitee.models.backbones import register_from_settings
    from splitee.onnx_export import export

    s = settings_of(ctx)
    register_from_settings(s)
    real = "input_size" in checkpoint_metadata(model_path)
    size = int(checkpoint_metadata(model_path).get("input_size", 32))
    calib = None
    if int8:
        calib = _training_frames(s, real, size, calibration, calibration_frames)
    manifest = export(model_path, out, bottleneck, calib)
    summary: dict = {
        "out": str(out),
        "arms": len(manifest["arms"]),
        "bytes": sum(p.stat().st_size for p in Path(out).glob("*.onnx")),
        "exporter": manifest["exporter"],
    }
    if int8:
        summary["accuracy"] = _int8_accuracy(s, out, real, size)
        manifest["int8"]["accuracy"] = summary["accuracy"]
        from splitee.files import write_json_atomic

        write_json_atomic(Path(out) / "manifest.json", manifest, indent=1)
    for row in manifest["arms"]:
        click.echo(
            f"arm {row['arm'] + 1}: {row['edge']} → {row['offload'] or 'final'} "
            f"{row['latent_shape'] or row['split_shape']}"
            + (f", {row['cloud']}" if row["cloud"] else "")
        )
    click.echo(json.dumps(summary))


def _training_frames(s, real: bool, size: int, calibration: Path | None, count: int):
    """``count`` uint8 NHWC frames to calibrate on, drawn with a fixed seed from
    ``calibration`` (a zip or folder of frames), else from the training split the settings
    point at."""
    import dataclasses

    import numpy as np

    from splitee.data import DataNotFoundError, load_from_settings, load_source
    from splitee.onnx_export import calibration_frames

    if real:
        from splitee.images import decode_fit, open_source

        src = open_source(calibration or s.data.images, "train")
        idx = np.sort(np.random.default_rng(0).permutation(len(src))[:count])
        src = dataclasses.replace(
            src,
            members=tuple(src.members[i] for i in idx),
            labels=tuple(src.labels[i] for i in idx),
        )
        return np.stack([decode_fit(b, size) for _, b, _ in src.iter_bytes()])
    if calibration is not None:
        return calibration_frames(load_source(calibration, "train", cache_dir=None).images, count)
    try:
        return calibration_frames(load_from_settings("train", s).images, count)
    except DataNotFoundError as exc:
        raise click.UsageError(
            f"{exc}; or give --calibration FILE (frames to calibrate on)"
        ) from None


def _int8_accuracy(s, out: Path, real: bool, size: int) -> dict:
    """Per-exit top-1 of the fp32 and int8 graphs on the shipped test sample."""
    import numpy as np

    from splitee.onnx_quantize import exit_accuracy
    from splitee.settings import ASSETS

    sample = ASSETS / SAMPLES[real]
    if real:
        from splitee.images import decode_fit, open_source

        src = open_source(sample, "test")
        frames = np.stack([decode_fit(b, size) for _, b, _ in src.iter_bytes()])
        labels = np.asarray(src.labels)
    else:
        from splitee.data import load_source

        ds = load_source(sample, "test", cache_dir=None)
        frames, labels = ds.images, ds.labels
    return {
        "frames": sample.name,
        "fp32": exit_accuracy(out, frames, labels, int8=False),
        "int8": exit_accuracy(out, frames, labels, int8=True),
    }
