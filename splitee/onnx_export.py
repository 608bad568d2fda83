"""``splitee export``: a checkpoint's edge and cloud graphs per split arm, as ONNX, and a manifest.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (torch.export, then the ONNX translation and
its optimiser), with a dynamic batch dimension and every other size static. Why not the legacy
TorchScript exporter (``dynamo=False``): it records the shape arithmetic of EfficientNet's
TF-"SAME" padding (:class:`splitee.models.efficientnet_lite.Conv2dSame`) as run-time
Shape/Gather ops and fails on the traced split segments of a backbone, while torch.export
specialises the spatial sizes — frames are fitted to the model's input before the graph —
so padding becomes constants and the exits' pooling fixed AveragePool/ReduceMean ops (the
exit heads' global pooling is a mean over H and W: :class:`splitee.models.split_backbone.
PooledHead`). The graphs match torch to float rounding (tests/unit/test_onnx_export.py).

The model is exported with its batch norms folded (what the workers run). With a learned
bottleneck (``--bottleneck``) its arms' edge graphs end in the integer latent symbols and
their cloud graphs start from them; the integer coding tables are copied beside the graphs,
so the directory alone serves a torch-free edge (:mod:`splitee.onnx_edge`).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from splitee.files import model_alpha, sha256_file, write_json_atomic
from splitee.models.checkpoint import load_checkpoint
from splitee.models.export_graphs import CloudGraph, EdgeGraph
from splitee.onnx_manifest import CARD, MANIFEST, MANIFEST_FORMAT, TABLES

OPSET = 18
EXPORTER = f"torch.onnx.export(dynamo=True), opset {OPSET}"


def _export(module: torch.nn.Module, args: tuple, path: Path) -> None:
    """One graph: dynamic batch on every tensor input with a batch, the rest static."""
    # the exporter warns of every torchvision op it cannot register (none of ours is one)
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    batch = torch.export.Dim("batch", min=1, max=4096)
    shapes = tuple({0: batch} if a.ndim >= 1 else None for a in args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.export's notes on specialised sizes
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            dynamo=True,
            input_names=module.input_names(),
            output_names=module.output_names(),
            dynamic_shapes=shapes,
            opset_version=OPSET,
            external_data=False,
            optimize=True,
            verbose=False,
        )


def _example_frames(size: int) -> torch.Tensor:
    # two frames: a batch of 1 would let torch.export specialise the batch dimension
    return torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8)


def export(
    checkpoint: Path,
    out: Path,
    bottleneck: Path | None = None,
    calibration: np.ndarray | None = None,
    arms: list[int] | None = None,
) -> dict:
    """Write the graphs and ``manifest.json`` into ``out``; returns the manifest.

    ``calibration`` (uint8 NHWC frames of the training split): also write int8 edge graphs,
    statically quantized on those frames (:mod:`splitee.onnx_quantize`). ``arms``: only these
    arms' graphs (tests, quick looks; the manifest lists every arm, the others without
    graphs, and an edge worker refuses such a partial export).
    """
    from splitee.models.profile import prefix_flops, split_bytes

    checkpoint, out = Path(checkpoint), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_checkpoint(checkpoint, fuse=True)
    bundle = None
    if bottleneck is not None:
        from splitee.models.bottleneck_checkpoint import load_bottlenecks

        bundle = load_bottlenecks(bottleneck, base_path=checkpoint)  # checks the base's hash
    L, size = model.num_exits, model.input_size
    frames = _example_frames(size)
    arms_out: list[dict] = []
    with torch.no_grad():
        for k in range(L):
            if arms is not None and k not in arms:
                arms_out.append(_arm_row(model, k, bundle, exported=False))
                continue
            codec = bundle.bottlenecks.codecs[k] if bundle and k in bundle.tables else None
            step = torch.tensor(codec.steps[0], dtype=torch.float32) if codec else None
            edge = EdgeGraph(model, k, codec)
            edge_args = (frames,) if codec is None else (frames, step)
            _export(edge, edge_args, out / f"edge-arm{k}.onnx")
            if k < L - 1:
                h = model.prefix(frames.permute(0, 3, 1, 2).float() / 255, k)
                cloud_args = (h,) if codec is None else (codec.quantize(h, 0), step)
                _export(CloudGraph(model, k, codec), cloud_args, out / f"cloud-arm{k}.onnx")
            arms_out.append(_arm_row(model, k, bundle, exported=True))
        frame_graph = None
        # the send-the-frame arm: the cloud runs the whole network on the frame
        if model.real_size and arms is None:
            _export(CloudGraph(model, -1), (frames,), out / "cloud-frame.onnx")
            frame_graph = "cloud-frame.onnx"
    with torch.no_grad():  # the classes, as the final exit outputs them
        classes = int(model(frames.permute(0, 3, 1, 2).float() / 255).shape[1])
    costs: dict = {}
    if model.real_size:
        flops = [prefix_flops(model, k) for k in range(L)]
        costs = {
            "relative_costs": [f / flops[-1] for f in flops],
            "total_flops": flops[-1],
            "split_bytes": [split_bytes(model, k) for k in range(L - 1)],
        }
    manifest = {
        "format": MANIFEST_FORMAT,
        "exporter": EXPORTER,
        "torch": torch.__version__,
        "source": {
            "checkpoint": checkpoint.name,
            "sha256": sha256_file(checkpoint),
            "alpha": model_alpha(checkpoint),
        },
        "model": {
            "arch": model.arch,
            "real_size": bool(model.real_size),
            "input_size": int(size),
            "num_classes": classes,
            "exit_depths": list(model.exit_depths),
            "temperatures": [float(t) for t in model.temperature],
        },
        "arms": arms_out,
        "complete": arms is None,
        "frame_graph": frame_graph,
        "costs": costs,
        "bottleneck": _bottleneck(bundle, bottleneck, out) if bundle else None,
        "int8": None,
    }
    if calibration is not None:
        from splitee.onnx_quantize import quantize_edge_graphs

        manifest["int8"] = quantize_edge_graphs(out, manifest, calibration)
    write_json_atomic(out / MANIFEST, manifest, indent=1)
    return manifest


def _arm_row(model, k: int, bundle, exported: bool) -> dict:
    """Arm k's manifest entry: its graphs' file names (None when not exported), what it
    offloads and the shapes."""
    final = k == model.num_exits - 1
    codec = bundle.bottlenecks.codecs[k] if bundle and k in bundle.tables else None
    return {
        "arm": k,
        "edge": f"edge-arm{k}.onnx" if exported else None,
        "edge_int8": None,
        "cloud": f"cloud-arm{k}.onnx" if exported and not final else None,
        "offload": None if final else ("symbols" if codec else "split"),
        "split_shape": list(model.feature_shape(k)),
        "latent_shape": list(codec.spec.latent_shape) if codec else None,
    }


def _bottleneck(bundle, path: Path, out: Path) -> dict:
    """Copy the bottleneck's integer tables (numpy safetensors) and card beside the graphs."""
    from safetensors.numpy import save_file

    from splitee.coding_tables import table_arrays
    from splitee.models.latent_codec import encoder_flops

    tensors = table_arrays(bundle.tables)
    save_file(tensors, str(out / TABLES))
    (out / CARD).write_text(json.dumps(bundle.card, indent=1) + "\n")
    return {
        "checkpoint": Path(path).name,
        "sha256": sha256_file(path),
        "steps": list(bundle.bottlenecks.steps),
        "arms": list(bundle.arms),
        "encoder_flops": {str(k): int(v) for k, v in encoder_flops(bundle, bundle.arms).items()},
    }


def calibration_frames(frames: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` frames drawn without replacement (a fixed seed: the same int8 graphs again)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(frames), size=min(count, len(frames)), replace=False)
    return frames[np.sort(idx)]


def batches(frames: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for i in range(0, len(frames), size):
        yield frames[i : i + size]
