"""What every multi-exit model says about itself, so no caller has to guess from its attributes.

The workers, the policy setup and the profiler handle three models — :class:`MultiExitNet`
(CIFAR ResNets), :class:`SplitBackboneNet` (any registered backbone) and :class:`FrameArmNet`
(either, with the send-the-frame arm 0 in front) — through this one :class:`SplitModel`
protocol: the split API, the batched early exit, and three declared facts:

* ``input_size``: the side of the square input the network takes (32 for the CIFAR ResNets);
* ``real_size``: frames of any size are fitted to ``input_size`` (:func:`splitee.images.fit`);
  ``False`` for the CIFAR ResNets, whose 32×32 frames are decoded as they are;
* ``send_frame``: arm 0 sends the camera's JPEG itself (:mod:`splitee.models.frame_arm`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from splitee.models.multi_exit import EarlyExitResult


class SplitModel(Protocol):
    """A multi-exit network that can be cut at any arm (see :mod:`splitee.models.multi_exit`)."""

    arch: str
    exit_depths: list[int]
    input_size: int
    real_size: bool
    send_frame: bool

    @property
    def num_exits(self) -> int: ...

    def feature_shape(self, k: int) -> tuple[int, ...]: ...

    def prefix(self, x: torch.Tensor, k: int) -> torch.Tensor: ...

    def exit_logits(self, h: torch.Tensor, k: int) -> torch.Tensor: ...

    def suffix(self, h: torch.Tensor, k: int) -> torch.Tensor: ...

    def early_exit(
        self, x: torch.Tensor, arms: torch.Tensor, side_observations: bool = True
    ) -> EarlyExitResult: ...

    def fuse_for_inference(self) -> SplitModel: ...
