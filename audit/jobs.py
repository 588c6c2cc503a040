"""Job history: Celery signal handlers that write one audit.JobRun per task run.

Arguments are never stored: only a SHA-256 digest of them and a short preview that keeps id-like values
(integers, UUIDs, short slugs) and hides everything else. Recording must never break the task itself, so
a failure here is logged and swallowed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import re
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import signals
from django.db import close_old_connections, connection
from django.utils import timezone

from audit.models import JobRun, JobState
from worker_project.redaction import SECRET_KEY_NAMES, redact_text

logger = logging.getLogger(__name__)

PREVIEW_MAX = 200
ERROR_MAX = 4000
_ID_LIKE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
# start times by task id in this process, for a duration that does not depend on clock steps
_monotonic_starts: dict[str, float] = {}


def args_digest(args: Any, kwargs: Any) -> str:
    payload = json.dumps({"args": list(args or ()), "kwargs": dict(kwargs or {})}, sort_keys=True, default=repr)
    return hashlib.sha256(payload.encode()).hexdigest()


def _preview_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and _ID_LIKE.match(value) and not re.search(r"[A-Za-z0-9+/]{40,}", value):
        return repr(value)
    return "…"


def args_preview(args: Any, kwargs: Any) -> str:
    """``(42, 'abc', group_id=3, token=[redacted], body=…)``: ids only, never content."""
    parts = [_preview_value(a) for a in (args or ())]
    for key, value in sorted(dict(kwargs or {}).items()):
        shown = "[redacted]" if SECRET_KEY_NAMES.search(str(key)) else _preview_value(value)
        parts.append(f"{key}={shown}")
    text = "(" + ", ".join(parts) + ")"
    return text if len(text) <= PREVIEW_MAX else text[: PREVIEW_MAX - 2] + "…)"


def _queue_of(request: Any) -> str:
    info = getattr(request, "delivery_info", None) or {}
    return str(info.get("routing_key") or info.get("exchange") or "")[:50]


def _periodic_name(request: Any) -> str:
    # django_celery_beat sends the PeriodicTask's name as a message header; Celery exposes headers on the request.
    name = getattr(request, "periodic_task_name", None)
    for attr in ("request_dict", "headers"):  # the worker's Request (task_received) keeps it in a dict
        if name:
            break
        values = getattr(request, attr, None)
        name = values.get("periodic_task_name") if isinstance(values, dict) else None
    return str(name or "")[:200]


def _finish(task_id: str, state: str, error: str = "", retries: int | None = None) -> None:
    now = timezone.now()
    run = JobRun.objects.filter(task_id=task_id).first()
    if run is None:
        return
    start = _monotonic_starts.pop(task_id, None)
    if start is not None:
        duration_ms = int((time.monotonic() - start) * 1000)
    elif run.started_at is not None:
        duration_ms = max(0, int((now - run.started_at) / timedelta(milliseconds=1)))
    else:
        duration_ms = None
    updates: dict[str, Any] = {"state": state, "finished_at": now, "duration_ms": duration_ms}
    if error:
        updates["error"] = error
    if retries is not None:
        updates["retries"] = retries
    JobRun.objects.filter(pk=run.pk).update(**updates)


def _format_error(exc: BaseException | None, tb: Any = None) -> str:
    if exc is None:
        return ""
    head = f"{type(exc).__name__}: {exc}"
    if tb is not None:
        head += "\n" + "".join(traceback.format_tb(tb)[-5:])
    return redact_text(head)[:ERROR_MAX]


def _safely(handler: Callable[..., None]) -> Callable[..., None]:
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            handler(*args, **kwargs)
        except Exception:  # noqa: BLE001 - history must never fail the task it records
            logger.exception("job history: %s failed", handler.__name__)

    wrapper.__name__ = handler.__name__
    return wrapper


def _received_fields(request: Any) -> dict[str, Any]:
    return {
        "task_name": str(request.name)[:200],
        "queue": _queue_of(request),
        "state": JobState.RECEIVED,
        "args_digest": args_digest(request.args, request.kwargs),
        "args_preview": args_preview(request.args, request.kwargs),
        "periodic_task_name": _periodic_name(request),
        "worker": str(getattr(request, "hostname", "") or "")[:200],
    }


class _ReceivedRows:
    """``task_received`` runs in the worker's consumer thread, which also takes every message off the broker: a
    query there per message (each waiting for the GIL behind the busy task threads) held a 32-thread worker to
    ~20 messages a second. The rows are queued instead and written by one thread in batches (one INSERT for all
    rows waiting). A row the task's ``task_prerun`` created first keeps its state; the batch fills in the worker's
    node name only."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.pid = os.getpid()
        threading.Thread(target=self._run, name="jobrun-received", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                rows = [self.queue.get(timeout=0.2)]
            except queue.Empty:
                connection.close()  # idle: no connection left open for nothing
                continue
            while True:
                try:
                    rows.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                close_old_connections()
                JobRun.objects.bulk_create([JobRun(**row) for row in rows], update_conflicts=True,
                                           unique_fields=["task_id"], update_fields=["worker"])
            except Exception:  # noqa: BLE001 - history must never fail the tasks it records
                logger.exception("job history: %d received rows not written", len(rows))


_received: _ReceivedRows | None = None
_received_lock = threading.Lock()


@_safely
def on_task_received(request: Any = None, **_: Any) -> None:
    """In the worker's main process, as the message arrives: the run is known before it starts (written by the
    batch thread a moment later)."""
    global _received
    if request is None:
        return
    with _received_lock:
        if _received is None or _received.pid != os.getpid():
            _received = _ReceivedRows()
    _received.queue.put({"task_id": request.id, **_received_fields(request)})


def _record_received_now(request: Any) -> None:
    close_old_connections()
    JobRun.objects.get_or_create(task_id=request.id, defaults=_received_fields(request))


@_safely
def on_task_prerun(task_id: str = "", task: Any = None, args: Any = None, kwargs: Any = None, **_: Any) -> None:
    request = task.request
    _monotonic_starts[task_id] = time.monotonic()
    fields = {
        "task_name": str(task.name)[:200],
        "queue": _queue_of(request),
        "args_digest": args_digest(args, kwargs),
        "args_preview": args_preview(args, kwargs),
        "state": JobState.STARTED,
        "periodic_task_name": _periodic_name(request),
        "started_at": timezone.now(),
        "finished_at": None,
        "duration_ms": None,
        "retries": int(request.retries or 0),
    }
    # A redelivery (acks late) runs the same task id again: the row is updated, not duplicated.
    # The worker's node name comes from task_received (the full ``name@host``); a row created here takes the
    # hostname the task request knows.
    JobRun.objects.update_or_create(
        task_id=task_id, defaults=fields, create_defaults={**fields, "worker": str(request.hostname or "")[:200]}
    )


@_safely
def on_task_success(sender: Any = None, **_: Any) -> None:
    _finish(sender.request.id, JobState.SUCCESS)


@_safely
def on_task_failure(task_id: str = "", exception: BaseException | None = None, traceback: Any = None,
                    **_: Any) -> None:
    _finish(task_id, JobState.FAILURE, error=_format_error(exception, traceback))


@_safely
def on_task_retry(request: Any = None, reason: Any = None, **_: Any) -> None:
    error = _format_error(reason) if isinstance(reason, BaseException) else redact_text(str(reason or ""))
    _finish(request.id, JobState.RETRY, error=error[:ERROR_MAX], retries=int(request.retries or 0) + 1)


@_safely
def on_task_revoked(request: Any = None, terminated: bool = False, signum: Any = None, expired: bool = False,
                    **_: Any) -> None:
    if request is None:
        return
    why = "expired" if expired else (f"terminated (signal {signum})" if terminated else "revoked")
    if not JobRun.objects.filter(task_id=request.id).exists():
        _record_received_now(request)
    _finish(request.id, JobState.REVOKED, error=why)


@_safely
def on_task_postrun(task_id: str = "", **_: Any) -> None:
    # success/failure/retry wrote the outcome; this only forgets the start time whatever happened.
    _monotonic_starts.pop(task_id, None)


_CONNECTIONS = (
    (signals.task_received, on_task_received),
    (signals.task_prerun, on_task_prerun),
    (signals.task_success, on_task_success),
    (signals.task_failure, on_task_failure),
    (signals.task_retry, on_task_retry),
    (signals.task_revoked, on_task_revoked),
    (signals.task_postrun, on_task_postrun),
)


def connect_signals() -> None:
    """Idempotent: weak=False so the handlers live as long as the process; dispatch_uid dedupes."""
    for signal, handler in _CONNECTIONS:
        signal.connect(handler, weak=False, dispatch_uid=f"audit.jobs.{handler.__name__}")
