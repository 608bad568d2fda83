"""Shared fixtures. Tests that need real servers start them through deploy/ scripts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "assets" / "cifar10-sample.zip"
CHECKPOINT = REPO / "assets" / "resnet56-multiexit.safetensors"
SHARED = REPO.parent / "shared" / "data"


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


def _script(name: str, *args: str, timeout: float = 600) -> None:
    import subprocess

    subprocess.run(["bash", str(REPO / "deploy" / name), *args], check=True, timeout=timeout)


def _running(what: str) -> bool:
    import subprocess

    out = subprocess.run(
        ["bash", str(REPO / "deploy" / "servers-status.sh")], capture_output=True, text=True
    ).stdout
    return any(line.startswith(what) and " running " in line for line in out.splitlines())


@pytest.fixture(scope="session")
def redis_server():
    """A real Redis started through deploy/redis-start.sh (stopped after, if we started it)."""
    was = _running("redis")
    _script("redis-start.sh")
    yield "redis://127.0.0.1:6379/0"
    if not was:
        _script("redis-stop.sh")


@pytest.fixture(scope="session")
def servers():
    """Kafka, Redis and Prometheus started through deploy/servers-up.sh, stopped after."""
    was = all(_running(s) for s in ("kafka", "redis", "prometheus"))
    _script("servers-up.sh")
    yield
    if not was:
        _script("servers-down.sh")
