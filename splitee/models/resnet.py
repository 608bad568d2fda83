"""The CIFAR ResNet family of He et al. (2016, section 4.2), as in akamaster's checkpoints.

Module names (``conv1``, ``bn1``, ``layer1..3``, ``linear``) match the pretrained checkpoints
in ``shared/data/weights/resnet_cifar10_akamaster`` so they load without renaming (after
stripping DataParallel's ``module.`` prefix). Inputs are RGB in [0, 1]; normalisation is a
buffer of the model, so callers never forget it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

DEPTHS = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9}
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    """3x3 conv-BN-ReLU-3x3 conv-BN, plus the parameter-free "option A" shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = stride != 1 or in_planes != planes
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample:
            x = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + x)


class CifarResNet(nn.Module):
    """Stem, three stages of n blocks (16/32/64 wide), global pool and a linear classifier."""

    def __init__(self, arch: str = "resnet56", num_classes: int = 10) -> None:
        super().__init__()
        if arch not in DEPTHS:
            raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(DEPTHS)}")
        n = DEPTHS[arch]
        self.arch = arch
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, num_classes)

    @property
    def blocks(self) -> list[BasicBlock]:
        """All residual blocks in order: b_1 … b_B."""
        return [*self.layer1, *self.layer2, *self.layer3]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn1(self.conv1((x - self.mean) / self.std)))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h.mean(dim=(2, 3)))  # global average pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for b in self.blocks:
            h = b(h)
        return self.head(h)


def load_pretrained(model: CifarResNet, path: Path) -> None:
    """Load an akamaster checkpoint (weights only, no arbitrary unpickling)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    state = blob.get("state_dict", blob)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model.load_state_dict(state)


def pretrained_file(directory: Path, arch: str) -> Path:
    """The akamaster checkpoint file for ``arch`` in ``directory``."""
    hits = sorted(Path(directory).glob(f"{arch}-*.th"))
    if not hits:
        raise FileNotFoundError(
            f"no {arch}-*.th in model.pretrained_dir={directory}; set SPLITEE_MODEL__PRETRAINED_DIR"
        )
    return hits[0]
