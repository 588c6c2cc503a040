"""gunicorn settings of the web role: ``gunicorn -c python:worker_project.gunicorn_conf worker_project.wsgi``.

Prometheus multiprocess mode: every gunicorn worker writes its request counters to files in one directory
and /metrics sums them, so ``gw_http_requests_total`` is the web role's total and never goes backwards
between scrapes (each worker's own counter would). The directory is ``PROMETHEUS_MULTIPROC_DIR``, else
``$WORKER_VAR_DIR/prometheus-web``; it is emptied when gunicorn starts, so counters start at 0 with the
process like any other. Without this file (runserver, tests) metrics stay in-process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def multiprocess_dir() -> Path:
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        return Path(configured)
    var_dir = os.environ.get("WORKER_VAR_DIR") or str(Path(__file__).resolve().parent.parent / "var")
    return Path(var_dir) / "prometheus-web"


# Set here, before a worker loads the app: prometheus_client picks its value store when it is first imported.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(multiprocess_dir())


def on_starting(server: Any) -> None:
    """Master, before any worker: drop the files of a previous run (only the *.db files the client writes)."""
    directory = multiprocess_dir()
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited: its live gauges go; its counters stay counted."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
