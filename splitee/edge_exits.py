"""What an edge model computes for a batch, in numpy: the edge worker's one view of any runtime.

The edge step (``edge_workers/processor.py``) decodes frames, asks the policy for arms, runs a
model and decides keep-or-offload. The model behind :class:`EdgeModel` is either the torch
split model (:class:`splitee.models.torch_edge.TorchEdgeModel`) or exported graphs on ONNX
Runtime (:class:`splitee.onnx_edge.OnnxEdgeModel`); both answer with :class:`EdgeExits`, so the
step itself never imports torch and runs in an environment without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class EdgeExits:
    """A batch of N frames through an edge model with L arms (the contract of
    :class:`splitee.models.multi_exit.EarlyExitResult`, in numpy). It decides nothing."""

    confidence: np.ndarray  # (N, L) max softmax; NaN where the exit was not computed
    prediction: np.ndarray  # (N, L) argmax; -1 where not computed
    probs: np.ndarray  # (N, classes) softmax at each frame's own arm (zeros: send-frame arm)
    features: dict[int, tuple[np.ndarray, np.ndarray | None]] = field(default_factory=dict)
    """arm -> (frame indices, what the arm offloads) for every frame whose arm is not the
    final one: split tensors (float), a learned bottleneck's integer latent symbols (int32),
    or None for the send-frame arm (the JPEG as received goes instead)."""


class EdgeModel(Protocol):
    """A multi-exit model as the edge step runs it: uint8 NHWC frames in, :class:`EdgeExits`
    out; ``input_size``, ``real_size`` and ``send_frame`` as :class:`~splitee.models.split_api.
    SplitModel` declares them."""

    input_size: int
    real_size: bool
    send_frame: bool

    @property
    def num_exits(self) -> int: ...

    def run_frames(self, images: np.ndarray, arms: np.ndarray, side: bool) -> EdgeExits: ...
