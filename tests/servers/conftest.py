"""Real servers for this tier, private to the test session.

Every session gets free ports and its own var dir (pids, logs, data) under pytest's tmp, exported
as the deploy scripts' variables (``SPLITEE_KAFKA_PORT`` …, ``SPLITEE_VAR_DIR``) for the whole
session: the settings' defaults follow them, and so do the workers and CLI subprocesses the tests
start. So the suite runs beside a live deployment on the default ports without touching it. The
servers start through the same deploy scripts as a deployment, and stop after the session.
"""

from __future__ import annotations

import subprocess

import pytest

from splitee.testing import free_ports
from tests.conftest import REPO

PINNED = (
    "SPLITEE_CONFIG",
    "SPLITEE_KAFKA__BOOTSTRAP",
    "SPLITEE_REDIS__URL",
    "SPLITEE_OBSERVABILITY__PROMETHEUS_URL",
    "SPLITEE_SECURE",  # secure mode has its own test (test_security.py)
)


def deploy(script: str, timeout: float = 600) -> None:
    """Run deploy/SCRIPT with this session's environment (ports, var dir)."""
    subprocess.run(["bash", str(REPO / "deploy" / script)], check=True, timeout=timeout)


@pytest.fixture(scope="session", autouse=True)
def deploy_env(tmp_path_factory) -> dict[str, str]:
    """Free ports and a private var dir, in os.environ for the session (see the module doc)."""
    kafka, controller, redis_port, prometheus = free_ports(4)
    env = {
        "SPLITEE_KAFKA_PORT": str(kafka),
        "SPLITEE_KAFKA_CONTROLLER_PORT": str(controller),
        "SPLITEE_REDIS_PORT": str(redis_port),
        "SPLITEE_PROMETHEUS_PORT": str(prometheus),
        "SPLITEE_VAR_DIR": str(tmp_path_factory.mktemp("var")),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        for key in PINNED:  # they would point the tests at another deployment
            mp.delenv(key, raising=False)
        yield env


@pytest.fixture(scope="session")
def redis_server(deploy_env):
    """A real Redis started through deploy/redis-start.sh; its URL. Stopped after the session."""
    deploy("redis-start.sh")
    yield f"redis://127.0.0.1:{deploy_env['SPLITEE_REDIS_PORT']}/0"
    deploy("redis-stop.sh")


@pytest.fixture(scope="session")
def servers(deploy_env):
    """Kafka, Redis and Prometheus started through deploy/servers-up.sh, stopped after."""
    deploy("servers-up.sh")
    yield
    deploy("servers-down.sh")
