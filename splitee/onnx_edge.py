"""The edge model on ONNX Runtime: the exported edge graphs, no torch anywhere.

One ORT session per split arm (``splitee export`` writes one edge graph per arm: frames →
exits 0…k and arm k's offload). A batch whose frames have several arms runs each arm's frames
through that arm's graph: the graphs cannot drop frames part-way as the torch early exit does,
so a frame computes exactly its own prefix and the exits before it (the side observations),
never more. ORT runs the graph in its own threads, outside the GIL, so the worker's event loop
and Kafka client keep running while a batch computes.

Arms are the worker's arms: with the send-frame arm in front (``policy.send_frame_arm``), arm 0
computes nothing (confidence 0, offloaded as the JPEG) and backbone arm k is the worker's
k + 1, as :class:`splitee.models.frame_arm.FrameArmNet` numbers them.
"""

from __future__ import annotations

import numpy as np

from splitee.edge_exits import EdgeExits
from splitee.onnx_manifest import ManifestError, OnnxManifest


def session_options(threads: int):
    """ORT options for a worker: ``threads`` intra-op threads, one graph at a time, every
    graph optimisation."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # warnings about unused initialisers are not the operator's
    return so


def session(path, threads: int = 1):
    """An ORT CPU session for one graph."""
    import onnxruntime as ort

    return ort.InferenceSession(
        str(path), session_options(threads), providers=["CPUExecutionProvider"]
    )


class OnnxEdgeModel:
    """A :class:`~splitee.edge_exits.EdgeModel` running an export's edge graphs on ORT.

    ``steps``: the quantization step of each bottleneck arm's chosen rate point (backbone
    arms), fed to its graph; ``int8``: the statically quantized edge graphs instead of fp32.
    A partial export (tests) runs only the arms it has; a worker wants every arm
    (:func:`splitee.policy_setup.onnx_edge_model_and_bandit` refuses a partial one).
    """

    def __init__(
        self,
        manifest: OnnxManifest,
        *,
        threads: int = 1,
        int8: bool = False,
        send_frame: bool = False,
        steps: dict[int, float] | None = None,
    ) -> None:
        if int8 and any(a.edge and a.edge_int8 is None for a in manifest.arms):
            raise ManifestError(f"{manifest.directory}: no int8 edge graphs (export --int8)")
        self.manifest = manifest
        self.input_size = manifest.input_size
        self.real_size = manifest.real_size
        self.send_frame = bool(send_frame)
        self.offset = 1 if self.send_frame else 0
        self.classes = manifest.num_classes
        self.steps = {k: np.asarray(v, np.float32) for k, v in (steps or {}).items()}
        for a in manifest.arms:
            if a.edge and a.offload == "symbols" and a.arm not in self.steps:
                raise ManifestError(f"arm {a.arm} codes latents: it needs a quantization step")
        self.sessions = {
            a.arm: session(manifest.path(a.edge_int8 if int8 else a.edge), threads)
            for a in manifest.arms
            if a.edge
        }

    @property
    def num_exits(self) -> int:
        return self.manifest.num_exits + self.offset

    def run_frames(self, images: np.ndarray, arms: np.ndarray, side: bool) -> EdgeExits:
        """Frame i stops at the worker's arm ``arms[i]`` (the early exit's contract)."""
        n, L, off = len(images), self.num_exits, self.offset
        arms = np.asarray(arms, np.int64)
        if n and (int(arms.min()) < 0 or int(arms.max()) >= L):
            raise ValueError(f"arms must lie in 0..{L - 1}")
        if images.dtype != np.uint8 or images.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"frames must be uint8 (N, {self.input_size}, {self.input_size}, 3)")
        out = EdgeExits(
            confidence=np.full((n, L), np.nan, np.float32),
            prediction=np.full((n, L), -1, np.int64),
            probs=np.zeros((n, self.classes), np.float32),
        )
        if off:
            out.confidence[:, 0] = 0.0  # nothing ran: C_0 = 0 < α, so the frame is offloaded
        for a in np.unique(arms).tolist():
            idx = np.flatnonzero(arms == a)
            if off and a == 0:
                out.features[0] = (idx, None)
                continue
            k = a - off
            if k not in self.sessions:
                raise ValueError(f"arm {a}: this export has no edge graph for it")
            batch = images if len(idx) == n else images[idx]
            feeds = {"frames": np.ascontiguousarray(batch)}
            if self.manifest.arms[k].offload == "symbols":
                feeds["step"] = self.steps[k]  # the rate point's step, checked at start
            res = self.sessions[k].run(None, feeds)
            probs = res[1]  # (m, k + 1, classes): exits 0..k
            conf, pred = probs.max(axis=2), probs.argmax(axis=2)
            if side:
                out.confidence[idx, off : a + 1] = conf
                out.prediction[idx, off : a + 1] = pred
            else:
                out.confidence[idx, a] = conf[:, k]
                out.prediction[idx, a] = pred[:, k]
            out.probs[idx] = probs[:, k]
            if a < L - 1:
                out.features[a] = (idx, res[2])
        return out
