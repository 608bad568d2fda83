"""Arm 0 = "send the frame": the camera's JPEG goes to the cloud, the edge computes nothing.

:class:`FrameArmNet` wraps a multi-exit model so that its arms shift by one and a new arm 0
comes first, with the same split API and ``early_exit`` contract, so the edge and cloud steps,
the bandit and the rewards need no special case beyond the payload:

* arm 0's "features" are the frame itself (the input tensor), its confidence is 0 — nothing
  ran, so ``C_0 = 0 < α`` and the frame is always offloaded — and its prediction is -1;
* arm k ≥ 1 is the wrapped model's arm k - 1;
* ``suffix(x, 0)`` is the whole network on the frame (what the cloud runs for arm 0).

The edge sends arm 0's frame as the JPEG it received (codec ``jpeg``), never the tensor.
"""

from __future__ import annotations

import torch
from torch import nn

from splitee.models.multi_exit import EarlyExitResult
from splitee.models.split_api import SplitModel


class FrameArmNet(nn.Module):
    """A :class:`~splitee.models.split_api.SplitModel` whose arm 0 sends the frame."""

    send_frame = True

    def __init__(self, inner: SplitModel) -> None:
        super().__init__()
        self.inner = inner
        self.arch = inner.arch
        self.exit_depths = [0, *inner.exit_depths]
        self.input_size = inner.input_size
        self.real_size = inner.real_size

    @property
    def num_exits(self) -> int:
        return self.inner.num_exits + 1

    def feature_shape(self, k: int) -> tuple[int, ...]:
        if k == 0:
            return (3, self.input_size, self.input_size)
        return tuple(self.inner.feature_shape(k - 1))

    def prefix(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return x if k == 0 else self.inner.prefix(x, k - 1)

    def exit_logits(self, h: torch.Tensor, k: int) -> torch.Tensor:
        if k == 0:
            raise ValueError("arm 0 sends the frame: it has no exit at the edge")
        return self.inner.exit_logits(h, k - 1)

    def suffix(self, h: torch.Tensor, k: int) -> torch.Tensor:
        return self.inner(h) if k == 0 else self.inner.suffix(h, k - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)

    def fuse_for_inference(self) -> FrameArmNet:
        self.inner.fuse_for_inference()
        return self

    @torch.inference_mode()
    def early_exit(
        self, x: torch.Tensor, arms: torch.Tensor, side_observations: bool = True
    ) -> EarlyExitResult:
        """The wrapped model's early exit on frames with arms ≥ 1; arm-0 frames only pass
        their input through as the offload."""
        arms = arms.to(torch.long).cpu()
        n, L = x.shape[0], self.num_exits
        if n and (int(arms.min()) < 0 or int(arms.max()) >= L):
            raise ValueError(f"arms must lie in 0..{L - 1}")
        conf = torch.full((n, L), float("nan"))
        conf[:, 0] = 0.0
        pred = torch.full((n, L), -1, dtype=torch.long)
        classes = self.inner.feature_shape(self.inner.num_exits - 1)[0]
        # arm-0 rows stay all zero: C_0 = 0 < α, so the keep-or-offload rule sends them on
        result = EarlyExitResult(conf, pred, torch.zeros(n, classes))
        frame = arms == 0
        run = torch.nonzero(~frame).flatten()
        if run.numel():
            sel = run.to(x.device)
            res = self.inner.early_exit(x[sel], arms[run] - 1, side_observations)
            conf[run, 1:] = res.confidence
            pred[run, 1:] = res.prediction
            result.probs[run] = res.probs
            for k, (idx, feats) in res.features.items():
                result.features[k + 1] = (run[idx], feats)
        if bool(frame.any()):
            idx = torch.nonzero(frame).flatten()
            result.features[0] = (idx, x[idx.to(x.device)])
        return result
