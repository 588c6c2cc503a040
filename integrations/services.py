"""The integrations app's door for other apps: ``notify`` is the only writer of ``Notification`` rows.

Rows are written ``pending``, one per enabled channel whose routing takes the event (kind glob and severity
threshold), and handed to the ``integrations.deliver_notification`` task after the caller's commit. Delivery,
throttling and retries live in ``integrations.delivery``; the senders in ``integrations.senders``; the threat
feeds in ``integrations.feeds``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

from django.db import transaction

from integrations.models import Notification, NotificationChannel

logger = logging.getLogger(__name__)

TITLE_MAX = 300
DEDUP_KEY_MAX = 200


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


SEVERITY_RANK = {s.value: i for i, s in enumerate(Severity)}


class EventAction(StrEnum):
    """PagerDuty Events v2's ``event_action``; other channels show it in the payload."""

    TRIGGER = "trigger"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"


# Kinds that open or close one incident, and the context field naming what the incident is about: a recovery
# resolves exactly the PagerDuty dedup_key its failure triggered (both map to "certificate.failover:<name>").
INCIDENT_KINDS: dict[str, tuple[str, str, EventAction]] = {
    "certificate.failover": ("certificate.failover", "certificate", EventAction.TRIGGER),
    "certificate.recovered": ("certificate.failover", "certificate", EventAction.RESOLVE),
}


def incident_of(kind: str, dedup_key: str, context: dict[str, Any]) -> tuple[str, EventAction]:
    """The incident an event belongs to and what it does to it.

    ``context["incident_key"]`` (and ``context["event_action"]``) say it outright; ``context["incident"]`` (a
    logpipeline incident id) groups events of one incident; ``INCIDENT_KINDS`` pairs failures with recoveries;
    otherwise every event is its own incident."""
    action = EventAction(context.get("event_action", EventAction.TRIGGER))
    if context.get("incident_key"):
        return str(context["incident_key"])[:DEDUP_KEY_MAX], action
    if kind in INCIDENT_KINDS:
        family, field, action = INCIDENT_KINDS[kind]
        if context.get(field):
            return f"{family}:{context[field]}"[:DEDUP_KEY_MAX], action
    if context.get("incident") is not None:
        return f"incident:{context['incident']}"[:DEDUP_KEY_MAX], action
    return dedup_key, action


def channel_takes(channel: NotificationChannel, kind: str, severity: str, action: EventAction) -> bool:
    """Routing: the kind matches one of the channel's globs (none: every kind), and the severity reaches its
    threshold — except a resolve or acknowledge, which always passes, or a page would never close."""
    if channel.event_kinds and not any(fnmatchcase(kind, pattern) for pattern in channel.event_kinds):
        return False
    if action != EventAction.TRIGGER:
        return True
    return SEVERITY_RANK[severity] >= SEVERITY_RANK.get(channel.min_severity, SEVERITY_RANK[Severity.MEDIUM])


def notify(kind: str, severity: Severity, subject: str, body: str = "", *, dedup_key: str,
           context: dict[str, Any] | None = None) -> int:
    """Queue one pending notification per enabled channel whose routing takes the event (see ``channel_takes``).

    ``dedup_key`` names the event: a channel that already has a notification with that key is not given a
    second one, so a redelivered task (or a retried service call) alerts once. Events of one incident (see
    ``incident_of``) are throttled together at delivery. ``context`` is the structured detail a sender may
    render; ``body`` the human text. Returns how many rows were written. Runs inside the caller's transaction:
    a rolled-back change leaves no alert behind, and delivery is enqueued only after the commit."""
    if len(dedup_key) > DEDUP_KEY_MAX:
        raise ValueError(f"dedup_key longer than {DEDUP_KEY_MAX} characters: {dedup_key[:40]}...")
    severity_value = Severity(severity).value
    context = dict(context or {})
    incident_key, action = incident_of(kind, dedup_key, context)
    written: list[int] = []
    with transaction.atomic():
        for channel in NotificationChannel.objects.filter(enabled=True).order_by("pk"):
            if not channel_takes(channel, kind, severity_value, action):
                continue
            if Notification.objects.filter(channel=channel, dedupe_key=dedup_key).exists():  # notif_dedupe_idx
                continue
            row = Notification.objects.create(
                channel=channel, event_kind=kind, severity=severity_value, dedupe_key=dedup_key,
                incident_key=incident_key, event_action=action.value, title=subject[:TITLE_MAX],
                body={"text": body, **context})
            written.append(row.pk)
        if written:
            transaction.on_commit(lambda: _enqueue(written))
    return len(written)


def _enqueue(ids: list[int]) -> None:
    """After commit: hand each row to the integrations queue. A broker that is down loses nothing — the rows
    stay pending and the beat job ``deliver_due_notifications`` picks them up."""
    from integrations.tasks import deliver_notification

    for pk in ids:
        try:
            deliver_notification.delay(pk)
        except Exception:  # noqa: BLE001 — the change is committed; the sweep delivers later
            logger.warning("could not enqueue notification %s; the periodic sweep will deliver it", pk)
            return


def threat_feed_blocklist() -> list[str]:
    """The merged, validated block list of every enabled feed, allow list applied (see integrations.feeds)."""
    from integrations.feeds import merged_blocklist

    return [entry.network for entry in merged_blocklist()]


BlocklistProposer = Callable[[str, list[str], set[str]], Any]
_blocklist_proposer: BlocklistProposer | None = None


def register_blocklist_proposer(fn: BlocklistProposer) -> None:
    """``fn(document_name, feed_entries, previous_feed_entries) -> version | None``: how the merged threat-feed list
    becomes a config version (registered by waf_config, which integrations does not import)."""
    global _blocklist_proposer
    _blocklist_proposer = fn


def blocklist_proposer() -> BlocklistProposer | None:
    return _blocklist_proposer
