"""Fixtures shared by every tier, and the tiers' markers.

Tiers, by folder: ``tests/unit`` (no servers; the whole tier in well under a minute),
``tests/slow`` (no servers; the shipped model evaluated on hundreds of frames, a short training
run) and ``tests/servers`` (real Kafka/Redis/Prometheus, started by ``tests/servers/conftest.py``
through the deploy scripts). Every test gets its tier's markers from its folder, so
``-m "not servers"`` or ``-m "not slow"`` also select tiers.

Property tests run under a hypothesis profile chosen by ``HYPOTHESIS_PROFILE``: ``ci`` (the
default, so a fresh clone and ``.ci/run`` see the same examples every run) is derandomized;
``fuzz`` is random and 50 times longer, for a developer hunting new failures on purpose. A
failure it finds becomes an ``@example`` in the test, so CI keeps it without depending on luck.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "assets" / "cifar10-sample.zip"
CHECKPOINT = REPO / "assets" / "resnet56-multiexit.safetensors"
SHARED = REPO.parent / "shared" / "data"

TESTS = Path(__file__).resolve().parent
TIER_MARKS = {"slow": ("slow",), "servers": ("servers", "slow")}

#: Examples per property test in CI; tests scale their counts from the loaded profile's.
CI_EXAMPLES = 100
settings.register_profile(
    "ci", max_examples=CI_EXAMPLES, derandomize=True, database=None, deadline=None, print_blob=True
)
settings.register_profile("fuzz", max_examples=50 * CI_EXAMPLES, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier's markers, so no test file has to remember to."""
    for item in items:
        path = item.path.resolve()
        tier = path.relative_to(TESTS).parts[0] if TESTS in path.parents else ""
        for mark in TIER_MARKS.get(tier, ()):
            item.add_marker(mark)


@pytest.fixture(scope="session")
def sample_frames():
    from splitee.data import load_source

    return load_source(SAMPLE, "test", cache_dir=None)


@pytest.fixture(scope="session")
def trained_model():
    from splitee.models import load_checkpoint

    if not CHECKPOINT.exists():
        pytest.fail(f"{CHECKPOINT} is missing: the repo ships it (run `splitee train`)")
    return load_checkpoint(CHECKPOINT)


@pytest.fixture
def tiny_model():
    from splitee.models import MultiExitNet

    torch.manual_seed(0)
    m = MultiExitNet("resnet20", [2, 4, 6, 9])
    # Random BN statistics so that eval mode is not an identity map.
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


@pytest.fixture
def rng():
    return np.random.default_rng(0)
