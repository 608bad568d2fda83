"""The torch split model behind the edge step's numpy interface (:mod:`splitee.edge_exits`).

The edge step stays free of torch; this adapter, imported only when the runtime is torch,
converts frames in and the early exit's tensors out, quantizing a learned bottleneck's arms
to their integer symbols (the step codes them, :mod:`splitee.latent_messages`).
"""

from __future__ import annotations

import numpy as np
import torch

from splitee.edge_exits import EdgeExits
from splitee.models.inputs import to_input
from splitee.models.latent_codec import LatentCodec
from splitee.models.split_api import SplitModel

#: split tensors are cast to the edge's wire codec here, on the whole batch at once (a torch
#: cast is cheaper than a per-frame one, and than numpy's to float16)
_CAST = {"float16": torch.float16}


class TorchEdgeModel:
    """A :class:`~splitee.edge_exits.EdgeModel` running a torch :class:`SplitModel`."""

    def __init__(
        self, model: SplitModel, latent: LatentCodec | None = None, codec: str = "float32"
    ) -> None:
        self.model = model.eval()
        self.latent = latent
        self.dtype = _CAST.get(codec, torch.float32)
        self.input_size = model.input_size
        self.real_size = model.real_size
        self.send_frame = model.send_frame

    @property
    def num_exits(self) -> int:
        return self.model.num_exits

    def run_frames(self, images: np.ndarray, arms: np.ndarray, side: bool) -> EdgeExits:
        res = self.model.early_exit(to_input(images), torch.from_numpy(arms), side)
        features: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        for k, (idx, feats) in res.features.items():
            if k == 0 and self.send_frame:
                features[k] = (idx.numpy(), None)  # the JPEG goes, not the tensor
            elif self.latent is not None and self.latent.handles(k):
                features[k] = (idx.numpy(), self.latent.quantize(feats, k))
            else:
                features[k] = (idx.numpy(), feats.to(self.dtype).numpy())
        return EdgeExits(
            confidence=res.confidence.numpy(),
            prediction=res.prediction.numpy(),
            probs=res.probs.numpy(),
            features=features,
        )
