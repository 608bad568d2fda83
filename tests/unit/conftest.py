"""Fixtures shared by the unit tests of the real-size path."""

from __future__ import annotations

import pytest
import torch

from splitee.models.split_backbone import SplitBackboneNet
from tests.unit.test_backbones import TinyNet, _randomise_bn


@pytest.fixture
def tiny_real() -> SplitBackboneNet:
    """A tiny real-size backbone (48×48 frames, 5 classes): exits after its two stages and a
    final one, so split arms 1 (8×24×24) and 2 (16×12×12); BatchNorm statistics random, so
    eval mode is not an identity map."""
    torch.manual_seed(0)
    model = SplitBackboneNet(
        "tiny", TinyNet(5), ["stage1", "stage2"], [1, 2, 3], 48, (0.5,) * 3, (0.25,) * 3, 5
    )
    _randomise_bn(model)
    return model.eval()
