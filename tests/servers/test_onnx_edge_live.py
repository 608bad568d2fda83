"""The torch-free edge live: an environment built from this checkout with ``pip install
'.[edge]'``, its edge worker on ONNX Runtime over real Kafka, the torch cloud behind it.

The environment is a fresh virtual environment (pip's cache makes it cheap after the first
time); it installs a copy of the checkout's sources, so nothing is built inside the checkout.
Torch must not be importable in it. The CIFAR ResNet is exported with ``splitee export`` in this
session's (full) environment, and 2 cameras stream the shipped sample through the edge (the
torch-free environment) and the cloud (this one). Checked: every frame one result and no dead
letter, frames leave at the edge and through the cloud, and what the edge worker runs is the
edge environment's own install. The environments' sizes are printed (``-s``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest

from splitee.results import collect_results
from splitee.testing import REPO, Pipeline, free_port_block
from tests.servers.test_caltech_live import assert_one_result_each, dlq_records, frames_sent, scrape

CHECKPOINT = REPO / "assets" / "resnet56-multiexit.safetensors"
PER_CAMERA = 60
#: what a source install of the checkout needs (pyproject.toml's packages and readme)
SOURCES = ("pyproject.toml", "README.md", "splitee", "policy_store", "producers")
SOURCES += ("edge_workers", "cloud_workers")


def _pypi_reachable() -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/onnxruntime/", timeout=10).close()
        return True
    except OSError:
        return False


def _du(path: Path) -> str:
    out = subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


@pytest.fixture(scope="module")
def edge_env(tmp_path_factory) -> Path:
    """A virtual environment with the checkout installed with its ``edge`` extra alone."""
    root = tmp_path_factory.mktemp("edge-env")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(p, src / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
         f"{src}[edge]"],
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    if pip.returncode:
        if not _pypi_reachable():
            pytest.skip("PyPI is unreachable: cannot build the edge environment (pip install)")
        pytest.fail(f"pip install '.[edge]' failed:\n{pip.stdout}\n{pip.stderr}")
    return venv


@pytest.fixture(scope="module")
def run(servers, edge_env, tmp_path_factory):
    from splitee.onnx_export import export

    out = tmp_path_factory.mktemp("onnx-live")
    graphs = out / "graphs"
    export(CHECKPOINT, graphs)
    tag = uuid.uuid4().hex[:6]
    p = Pipeline.create(
        out,
        SPLITEE_MODEL__CHECKPOINT=str(CHECKPOINT),
        SPLITEE_EDGE__RUNTIME="onnxruntime",
        SPLITEE_EDGE__ONNX_DIR=str(graphs),
        SPLITEE_POLICY__NAME="isplitee",
        SPLITEE_POLICY__KEY=f"onnx-{tag}",
        SPLITEE_PRODUCER__COUNT=str(PER_CAMERA),
    )
    edge, cloud = f"ox{tag}-edge", f"ox{tag}-cloud"
    port = free_port_block(1) + 1
    p.start("edge", edge, port, python=str(edge_env / "bin" / "python"))
    p.start("cloud", cloud)
    try:
        p.wait_ready(edge=1, cloud=1)
        run_id = f"onnx-{tag}"
        json.loads(p.cli("produce", "--run-id", run_id))
        sent = frames_sent(p)
        view = collect_results(p.settings.kafka, set(sent), timeout_s=120, run_id=run_id)
        time.sleep(1)
        yield {
            "p": p,
            "edge": edge,
            "sent": sent,
            "view": view,
            "dlq": dlq_records(p),
            "metrics": scrape(port),
        }
    finally:
        p.stop()


def test_torch_is_not_importable_in_the_edge_environment(edge_env):
    py = str(edge_env / "bin" / "python")
    probe = "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"
    assert subprocess.run([py, "-c", probe], cwd=edge_env).returncode == 0, "torch is installed"
    where = subprocess.run(
        [py, "-c", "import splitee, onnxruntime; print(splitee.__file__)"],
        cwd=edge_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(edge_env)), where  # its own install, not the checkout
    print(f"edge environment {_du(edge_env)}, this one ({sys.prefix}) {_du(Path(sys.prefix))}")


def test_the_torch_free_edge_answers_every_frame(run):
    assert_one_result_each(run, 2 * PER_CAMERA)
    sent, view = run["sent"], run["view"]
    where = Counter(r.where for r in view.results.values())
    assert where["edge"] > 0, where
    frames_in = sum(v for _, v in run["metrics"]["splitee_frames_in_total"])
    assert frames_in >= len(sent)
    print(f"results by where: {dict(where)}")
