"""The beat jobs' selection: due certificates (indexed, O(due)) and failing ones near expiry."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from certificates.services.policy import due_certificates, failover_candidates, retry_ready_certificates


def _enqueue_after_commit(ids: list[int], enqueue: Callable[[int], object]) -> None:
    def send() -> None:
        for pk in ids:
            enqueue(pk)

    transaction.on_commit(send)


def scan_expiring_certificates(enqueue_renewal: Callable[[int], object], enqueue_failover: Callable[[int], object],
                               now: dt.datetime | None = None) -> dict[str, int]:
    """Enqueue one renewal per due certificate and one failover per failing certificate near expiry. Two
    index range scans returning ids only; nothing loops over all certificates."""
    now = now or timezone.now()
    due = list(due_certificates(now).values_list("id", flat=True))
    failing = list(failover_candidates(now).values_list("id", flat=True))
    _enqueue_after_commit(due, enqueue_renewal)
    _enqueue_after_commit(failing, enqueue_failover)
    return {"due": len(due), "failover": len(failing)}


def retry_failed_renewals(enqueue_renewal: Callable[[int], object], now: dt.datetime | None = None) -> dict[str, int]:
    """Failing certificates whose backoff has passed (the daily scan alone would retry only once a day)."""
    now = now or timezone.now()
    ids = list(retry_ready_certificates(now).values_list("id", flat=True))
    _enqueue_after_commit(ids, enqueue_renewal)
    return {"retried": len(ids)}
