"""deploy/lib.sh's supervisor: what dies is restarted, a crash loop is given up, a stop stops.

Runs the real shell functions (as deploy/up.sh and down.sh do) on small child commands, with
a private var dir under tmp_path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

LIB = REPO / "deploy" / "lib.sh"


def lib(script: str, var: Path, timeout: float = 30, **env: str) -> subprocess.CompletedProcess:
    """Run SCRIPT in bash after sourcing deploy/lib.sh, with SPLITEE_VAR_DIR=var."""
    full = {**os.environ, "SPLITEE_VAR_DIR": str(var), **env}
    return subprocess.run(
        ["bash", "-c", f'source "{LIB}"\n{script}'],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def alive(pid: int) -> bool:
    """True if PID runs (a zombie waiting for its parent counts as dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(pred, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := pred():
            return value
        time.sleep(0.05)
    raise TimeoutError(pred)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def test_a_crash_loop_is_restarted_five_times_then_given_up(tmp_path):
    out = lib("supervise crashy -- bash -c 'exit 3'", tmp_path, SPLITEE_RESTART_BACKOFF="0.05")
    assert out.returncode == 1
    lines = (tmp_path / "run" / "crashy.restarts").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == ["restart: exit 3"] * 5 + [
        "gave up: exit 3"
    ]
    assert "crash loop, giving up" in out.stderr
    assert lib("restart_count crashy", tmp_path).stdout.strip() == "5, gave up"


def test_restarts_older_than_the_window_do_not_count(tmp_path):
    # Crashes 0.55 s apart, 4 times, then a clean exit: never 3 within 1 s, so never given up.
    crash_4_times = "n=$(cat n 2>/dev/null || echo 0); echo $((n + 1)) > n; sleep 0.55; ((n < 4))"
    out = lib(
        f"cd '{tmp_path}' && supervise slow -- bash -c '{crash_4_times} && exit 3; exit 0'",
        tmp_path,
        SPLITEE_RESTART_BACKOFF="0",
        SPLITEE_RESTART_MAX="2",
        SPLITEE_RESTART_WINDOW="1",
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "run" / "slow.restarts").read_text().count(" restart: exit 3") == 4


def test_a_configuration_refusal_is_not_restarted(tmp_path):
    """Exit 78 (EX_CONFIG: a worker refusing another model's policy) would fail the same way on
    every restart: given up at once, not after a crash loop."""
    out = lib("supervise refused -- bash -c 'exit 78'", tmp_path, SPLITEE_RESTART_BACKOFF="0.05")
    assert out.returncode == 1
    lines = (tmp_path / "run" / "refused.restarts").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == ["gave up: exit 78 (configuration)"]
    assert "refused to start" in out.stderr


def test_a_clean_exit_is_not_restarted(tmp_path):
    out = lib("supervise once -- true", tmp_path, SPLITEE_RESTART_BACKOFF="0.05")
    assert out.returncode == 0
    assert (tmp_path / "run" / "once.restarts").read_text() == ""
    assert "exited cleanly" in out.stderr


def test_sigkilled_child_is_restarted_and_a_stop_stops_without_restart(tmp_path):
    run = tmp_path / "run"
    started = lib(
        'start_supervised sleeper "$VAR_DIR/work" "$LOG_DIR/sleeper.log" -- sleep 1000', tmp_path
    )
    assert started.returncode == 0, started.stderr
    supervisor = read_pid(run / "sleeper.pid")
    first = wait_for(lambda: read_pid(run / "child" / "sleeper.pid"))
    killed_at = time.monotonic()
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: (p := read_pid(run / "child" / "sleeper.pid")) != first and p)
    assert time.monotonic() - killed_at >= 0.9  # the ~1 s backoff
    assert alive(second) and alive(supervisor)
    assert (run / "sleeper.restarts").read_text().endswith("restart: killed by signal 9\n")

    stopped = lib("stop_supervised sleeper", tmp_path)  # what deploy/down.sh does
    assert stopped.returncode == 0, stopped.stderr
    assert not alive(supervisor) and not alive(second)
    assert not (run / "child" / "sleeper.pid").exists()
    assert lib("restart_count sleeper", tmp_path).stdout.strip() == "1"
    log = (tmp_path / "log" / "sleeper.log").read_text()
    assert "stopped (supervisor got a stop signal)" in log


def test_stop_also_ends_a_child_whose_supervisor_was_killed(tmp_path):
    run = tmp_path / "run"
    lib('start_supervised orphan "$VAR_DIR/work" "$LOG_DIR/orphan.log" -- sleep 1000', tmp_path)
    child = wait_for(lambda: read_pid(run / "child" / "orphan.pid"))
    os.kill(read_pid(run / "orphan.pid"), signal.SIGKILL)
    assert alive(child)
    assert lib("stop_supervised orphan", tmp_path).returncode == 0
    wait_for(lambda: not alive(child), timeout=5)


def _default_sigint() -> None:
    """A supervisor started from a terminal: bash cannot trap a signal that was ignored when it
    started (as SIGINT is under a non-interactive shell's ``cmd &``, e.g. a backgrounded CI)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_to_the_supervisor_is_passed_on(tmp_path, sig):
    proc = subprocess.Popen(
        ["bash", "-c", f'source "{LIB}"; supervise fg -- sleep 1000'],
        env={**os.environ, "SPLITEE_VAR_DIR": str(tmp_path)},
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    child = wait_for(lambda: read_pid(tmp_path / "run" / "child" / "fg.pid"))
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "restarting" not in err
    assert not alive(child)
