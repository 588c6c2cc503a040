"""The integrations app's door for other apps: ``notify`` is the only writer of ``Notification`` rows.

Rows are written ``pending``, one per enabled channel that takes the event kind; sending them (and retries,
severity thresholds) belongs to the senders, which do not exist yet.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from django.db import transaction

from integrations.models import Notification, NotificationChannel

TITLE_MAX = 300
DEDUP_KEY_MAX = 200


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


def notify(kind: str, severity: Severity, subject: str, body: str = "", *, dedup_key: str,
           context: dict[str, Any] | None = None) -> int:
    """Queue one pending notification per enabled channel whose ``event_kinds`` is empty or names ``kind``.

    ``dedup_key`` names the event: a channel that already has a notification with that key is not given a
    second one, so a redelivered task (or a retried service call) alerts once. ``context`` is the structured
    detail a sender may render; ``body`` the human text. Returns how many rows were written. Runs inside the
    caller's transaction: a rolled-back change leaves no alert behind."""
    if len(dedup_key) > DEDUP_KEY_MAX:
        raise ValueError(f"dedup_key longer than {DEDUP_KEY_MAX} characters: {dedup_key[:40]}...")
    written = 0
    with transaction.atomic():
        for channel in NotificationChannel.objects.filter(enabled=True).order_by("pk"):
            if channel.event_kinds and kind not in channel.event_kinds:
                continue
            if Notification.objects.filter(channel=channel, dedupe_key=dedup_key).exists():  # notif_dedupe_idx
                continue
            Notification.objects.create(
                channel=channel, event_kind=kind, severity=Severity(severity).value, dedupe_key=dedup_key,
                title=subject[:TITLE_MAX], body={"text": body, **(context or {})})
            written += 1
    return written
