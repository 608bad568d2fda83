"""A policy learned with one model never meets another model's statistics (live Redis).

The issue this guards: the Caltech-101 demo (7 arms) left its ``global`` policy in Redis (AOF),
then a CIFAR deployment (9 arms) used the same key; every update failed in the Lua script and
the edge workers fail-stopped on the same batch again and again. By default the keys now carry
the model's identity; with ``policy.per_model`` off a worker refuses to start, in one line that
names the fix, and the supervisor does not restart it (exit 78).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from policy_store import Delta
from splitee import policy_setup
from splitee.cli import main
from splitee.settings import load_settings
from tests.conftest import REPO

CIFAR = REPO / "assets" / "resnet56-multiexit.safetensors"
CALTECH = REPO / "assets" / "efficientnet-lite0-caltech101.safetensors"


def _config(tmp_path: Path, url: str, ns: str, checkpoint: Path, **policy: object) -> Path:
    path = tmp_path / f"{checkpoint.stem}-{uuid.uuid4().hex[:6]}.toml"
    lines = [f"[redis]\nurl = {url!r}\nnamespace = {ns!r}\n"]
    lines.append(f"[model]\ncheckpoint = '{checkpoint}'\n")
    lines.append("[policy]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in policy.items()))
    path.write_text("\n".join(lines))
    return path


def _learn(s, frames: int = 3):
    """A worker's store for settings ``s``, after ``frames`` updates of its ``global`` policy."""
    store = policy_setup.worker_store(s, policy_setup.split_arms(s))
    d = Delta.zeros(store.num_arms)
    for i in range(frames):
        d.add(0, [(0, 0.5)], f"f{uuid.uuid4().hex[:8]}-{i}")
    store.apply("global", d)
    return store


def _cli(config: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(config), "policy", *args])


def test_two_models_keep_their_own_policies_and_every_tool_finds_them(redis_server, tmp_path):
    ns = f"ident-{uuid.uuid4().hex[:6]}"
    cifar_cfg = _config(tmp_path, redis_server, ns, CIFAR)
    caltech_cfg = _config(tmp_path, redis_server, ns, CALTECH)
    cifar, caltech = load_settings(cifar_cfg), load_settings(caltech_cfg)
    a = _learn(caltech, 2)  # the demo first, then the other model: no conflict, no reset
    b = _learn(cifar, 3)
    assert a.num_arms != b.num_arms and a.namespace != b.namespace
    assert b.namespace.startswith(f"{ns}:") and b.namespace.endswith(f"-{b.num_arms}a")
    assert float(a.read_fresh("global").t) == 2 and float(b.read_fresh("global").t) == 3
    # splitee policy show / snapshot / reset read the keys the workers wrote
    shown = _cli(cifar_cfg, "show", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["global"]["t"] == 3
    snap = tmp_path / "snap.json"
    assert _cli(cifar_cfg, "snapshot", str(snap)).exit_code == 0
    assert json.loads(snap.read_text())["namespace"] == b.namespace
    assert _cli(caltech_cfg, "reset").output.strip() == "reset: global"
    assert float(b.read_fresh("global").t) == 3  # the other model's policy is untouched
    assert _cli(cifar_cfg, "restore", str(snap)).exit_code == 0
    # the exporter builds its store the same way
    exporter = policy_setup.store(cifar, policy_setup.split_arms(cifar), cache_ms=0.0)
    assert exporter.namespace == b.namespace and exporter.policies() == ["global"]
    b.reset("global")


def test_without_per_model_keys_a_worker_refuses_another_models_policy(redis_server, tmp_path):
    ns = f"shared-{uuid.uuid4().hex[:6]}"
    caltech_cfg = _config(tmp_path, redis_server, ns, CALTECH, per_model=False)
    cifar_cfg = _config(tmp_path, redis_server, ns, CIFAR, per_model=False)
    cifar = load_settings(cifar_cfg)
    demo = _learn(load_settings(caltech_cfg))
    with pytest.raises(policy_setup.PolicyConflict) as e:
        policy_setup.worker_store(cifar, policy_setup.split_arms(cifar))
    msg = str(e.value)
    assert "\n" not in msg and f"has {demo.num_arms} arms, this model 9" in msg
    assert "splitee policy reset global" in msg and "policy.key" in msg
    # a real edge worker stops before consuming anything: one line, exit 78 (no restart)
    env = {**os.environ, "SPLITEE_CONFIG": str(cifar_cfg)}
    run = subprocess.run(
        [sys.executable, "-m", "splitee.cli", "edge"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 78, run.stderr[-2000:]
    assert "splitee policy reset global" in run.stderr and "Traceback" not in run.stderr
    # either fix works: another key, or resetting the old policy
    other = load_settings(_config(tmp_path, redis_server, ns, CIFAR, per_model=False, key="c10"))
    policy_setup.worker_store(other, policy_setup.split_arms(other))
    assert _cli(cifar_cfg, "reset", "global").exit_code == 0
    _learn(cifar).reset("global")
