"""What every long-running observability service shares: metrics endpoint, target, stop signal.

The evaluator and the exporter are plain processes (no faust): through the same
:mod:`splitee.worker.runtime` calls as the workers they serve ``/metrics``, register a Prometheus
file_sd target (removed at exit), and run until SIGTERM or SIGINT, which only set an event, so
the current step finishes and every client is closed before the process leaves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.registry import Collector

from splitee.worker import runtime

log = logging.getLogger("splitee.observability")


def start(
    var_dir: Path,
    role: str,
    worker: str,
    port: int,
    *collectors: Collector,
    host: str = "127.0.0.1",
) -> threading.Event:
    """Register ``collectors``, serve /metrics on ``host:port``, register the target; the stop
    event."""
    for c in collectors:
        REGISTRY.register(c)
    stop = runtime.stop_event()
    runtime.serve_metrics(var_dir, role, worker, port, host)
    return stop


def run_loop(step: Callable[[], None], interval_s: float, stop: threading.Event) -> None:
    """Call ``step`` every ``interval_s`` until ``stop``; a failing step is logged, not fatal."""
    while not stop.is_set():
        try:
            step()
        except Exception:  # a broker or Redis hiccup: the metrics say so, try again
            log.exception("step failed")
        stop.wait(interval_s)
