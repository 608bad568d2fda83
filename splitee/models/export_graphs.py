"""The edge and cloud halves of a multi-exit model as plain modules, ready for ONNX export.

The workers run a model through its split API with Python control flow per batch (frames
leave at different arms, :func:`~splitee.models.multi_exit.run_early_exit`). A compiled graph
has no such control flow, so each split arm k becomes two fixed graphs:

* :class:`EdgeGraph` — uint8 NHWC frames (what :mod:`splitee.jpeg` / :mod:`splitee.images`
  decode) → the temperature-scaled logits and softmax of exits 0…k (the side observations
  I-SplitEE reads) and what arm k offloads: the split tensor, or, with a learned bottleneck
  for that arm, its integer latent symbols ``round(encoder(h) / step)``;
* :class:`CloudGraph` — the split tensor, or the latent symbols and their step, → the final
  logits.

The frame's conversion to the network's input (:func:`splitee.models.inputs.to_input`) is the
graph's first op, so the torch-free edge feeds decoded frames as they are. Every op is the one
the torch path runs (``prefix``, ``exit_logits``, ``suffix``, the codec's ``quantize`` and
``dequantize``), so ORT and torch agree to float rounding (tests/unit/test_onnx_export.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from splitee.models.bottleneck import ArmCodec
from splitee.models.multi_exit import MultiExitNet
from splitee.models.split_api import SplitModel
from splitee.models.split_backbone import SplitBackboneNet


def frames_to_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC → float NCHW in [0, 1]: :func:`~splitee.models.inputs.to_input`'s ops."""
    return frames.permute(0, 3, 1, 2).float() / 255


def segments_of(model: SplitModel) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """The model as one callable per exit (segment 0 takes the input), as its early exit
    runs it: the CIFAR ResNets' blocks, or a split backbone's traced segments."""
    if isinstance(model, MultiExitNet):
        return model.segments()
    if isinstance(model, SplitBackboneNet):
        return [lambda h, k=k: model.segment(h, k) for k in range(model.num_exits)]
    raise TypeError(f"cannot export {type(model).__name__}: not a MultiExitNet or split backbone")


class EdgeGraph(nn.Module):
    """Edge half of arm ``k``: frames → (logits, probs) of exits 0…k and the offload.

    ``logits`` and ``probs`` are (N, k+1, classes): the exits a frame passes on its way to arm
    k, so side observations cost no second graph. With ``codec`` (arm k's learned
    bottleneck) the offload is ``symbols`` (int32) and the graph takes the rate point's
    ``step`` as an input, so one graph serves every rate point; otherwise it is ``split``,
    the prefix tensor. The final arm offloads nothing.
    """

    def __init__(self, model: SplitModel, k: int, codec: ArmCodec | None = None) -> None:
        super().__init__()
        self.model = model
        self.k = k
        self.codec = codec
        self._segments = segments_of(model)

    @property
    def final(self) -> bool:
        return self.k == self.model.num_exits - 1

    def input_names(self) -> list[str]:
        return ["frames", "step"] if self.codec is not None else ["frames"]

    def output_names(self) -> list[str]:
        if self.final:
            return ["logits", "probs"]
        return ["logits", "probs", "symbols" if self.codec is not None else "split"]

    def forward(self, frames: torch.Tensor, step: torch.Tensor | None = None):
        h = frames_to_input(frames)
        logits = []
        for j in range(self.k + 1):
            h = self._segments[j](h)
            logits.append(self.model.exit_logits(h, j).float())
        stacked = torch.stack(logits, dim=1)
        probs = stacked.softmax(dim=2)
        if self.final:
            return stacked, probs
        if self.codec is None:
            return stacked, probs, h
        symbols = torch.round(self.codec.encoder(h.float()) / step).to(torch.int32)
        return stacked, probs, symbols


class CloudGraph(nn.Module):
    """Cloud half of arm ``k``: the split tensor (or latent symbols and step) → final logits.

    ``k = -1`` is the send-the-frame arm: uint8 NHWC frames through the whole network."""

    def __init__(self, model: SplitModel, k: int, codec: ArmCodec | None = None) -> None:
        super().__init__()
        self.model = model
        self.k = k
        self.codec = codec

    def input_names(self) -> list[str]:
        if self.k < 0:
            return ["frames"]
        return ["symbols", "step"] if self.codec is not None else ["split"]

    def output_names(self) -> list[str]:
        return ["logits"]

    def forward(self, x: torch.Tensor, step: torch.Tensor | None = None) -> torch.Tensor:
        if self.k < 0:
            return self.model(frames_to_input(x)).float()
        if self.codec is not None:
            x = self.codec.decoder(x.to(torch.float32) * step)
        return self.model.suffix(x, self.k).float()
