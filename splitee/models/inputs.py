"""Frames as the models take them: uint8 NHWC images → float NCHW tensors in [0, 1].

One function shared by training, the offline evaluator and the live edge, so every path feeds
the network exactly the same numbers.
"""

from __future__ import annotations

import numpy as np
import torch


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC frames → float NCHW in [0, 1], the models' input."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)
