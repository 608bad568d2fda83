"""int8 edge graphs: ONNX Runtime's static quantization, calibrated on training frames.

Static (not dynamic) quantization: activations get fixed scales from a calibration pass over
frames of the training split, so a convolution runs as an integer kernel end to end instead
of quantizing its input at run time. QDQ format, per-channel int8 weights and uint8
activations with MinMax calibration (ORT's defaults for CNNs on x86). The graph's inputs and
outputs stay as they are (uint8 frames in; float logits and probabilities, int32 symbols or
the float split tensor out), so the edge runs an int8 graph exactly like an fp32 one.

The first exit's prefix (everything exit 1's head reads from: the stem and the first stages,
at the highest resolutions) stays in float32. Measured on the Caltech-101 test split with the
shipped EfficientNet-Lite0: quantizing it too cost 0.94 / 0.90 / 0.55 points at exits 2–4; kept
in float32, every exit is within 0.38 points (a uint8 step on the shallow, high-resolution
activations perturbs everything after them; later stages in float32 did not help, and
percentile or entropy calibration did not either).

What int8 costs in accuracy is measured per exit by :func:`exit_accuracy` on labelled frames
(``splitee export --int8`` reports it on the test sample and keeps it in the manifest).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

#: frames per calibration batch (the graphs have a dynamic batch)
CALIBRATION_BATCH = 16


class FramesReader:
    """ORT's calibration data reader over uint8 NHWC frames (and a bottleneck arm's step)."""

    def __init__(self, frames: np.ndarray, step: float | None) -> None:
        self.frames = frames
        self.step = None if step is None else np.asarray(step, np.float32)
        self._it: Iterator[dict] | None = None
        self.rewind()

    def _batches(self) -> Iterator[dict]:
        for i in range(0, len(self.frames), CALIBRATION_BATCH):
            feeds = {"frames": np.ascontiguousarray(self.frames[i : i + CALIBRATION_BATCH])}
            if self.step is not None:
                feeds["step"] = self.step
            yield feeds

    def get_next(self) -> dict | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = self._batches()


def first_exit_prefix(graph) -> list[str]:
    """Names of the nodes that compute what the first exit's head reads (its input's
    ancestors), found by the exporter's namespace of the head (``…exits.0…``); empty when the
    graph has no first exit."""
    producer = {out: n for n in graph.node for out in n.output}
    head = [
        n
        for n in graph.node
        for p in n.metadata_props
        if p.key == "namespace" and re.search(r"exits\.0(\W|$)", p.value)
    ]
    if not head:
        return []
    inside = {n.name for n in head}
    todo = [i for n in head for i in n.input if i in producer and producer[i].name not in inside]
    seen: set[str] = set()
    while todo:
        node = producer[todo.pop()]
        if node.name in seen:
            continue
        seen.add(node.name)
        todo.extend(i for i in node.input if i in producer)
    return [n.name for n in graph.node if n.name in seen]


def quantize_graph(src: Path, dst: Path, frames: np.ndarray, step: float | None) -> None:
    """One edge graph to int8 (shape inference and ORT's pre-processing first, as its
    quantization tool recommends)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
        quantize_static(
            str(pre),
            str(dst),
            FramesReader(frames, step),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=first_exit_prefix(onnx.load(str(pre)).graph),
        )


def quantize_edge_graphs(out: Path, manifest: dict, frames: np.ndarray) -> dict:
    """int8 edge graphs beside the fp32 ones (``edge-arm<k>.int8.onnx``), recorded in the
    manifest's arms; returns the manifest's ``int8`` entry."""
    bn = manifest.get("bottleneck")
    for row in manifest["arms"]:
        if row["edge"] is None:
            continue
        k = row["arm"]
        step = bn["steps"][0] if bn and row["offload"] == "symbols" else None
        name = f"edge-arm{k}.int8.onnx"
        quantize_graph(Path(out) / row["edge"], Path(out) / name, frames, step)
        row["edge_int8"] = name
    return {
        "format": "QDQ",
        "weights": "int8 per channel",
        "activations": "uint8, MinMax calibration",
        "float32": "the first exit's prefix (what exit 1's head reads from)",
        "calibration_frames": len(frames),
    }


def exit_accuracy(
    directory: Path, frames: np.ndarray, labels: np.ndarray, int8: bool, batch: int = 32
) -> list[float]:
    """Top-1 of every exit on labelled frames, from the final arm's edge graph (it computes
    every exit on the way), fp32 or int8."""
    from splitee.onnx_edge import session
    from splitee.onnx_manifest import read_manifest

    m = read_manifest(directory)
    final = m.arms[-1]
    name = final.edge_int8 if int8 else final.edge
    if name is None:
        raise ValueError(f"{directory}: no {'int8 ' if int8 else ''}graph of the final arm")
    sess = session(m.path(name))
    right = np.zeros(m.num_exits)
    for i in range(0, len(frames), batch):
        logits = sess.run(["logits"], {"frames": np.ascontiguousarray(frames[i : i + batch])})[0]
        right += (logits.argmax(axis=2) == labels[i : i + batch, None]).sum(axis=0)
    return [round(float(r) / len(frames), 4) for r in right]
