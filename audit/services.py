"""The audit trail: append an event to the hash chain, verify the chain.

Each event's ``hash`` is SHA-256 over the canonical JSON of its fields plus ``prev_hash`` (the previous
event's hash, or 64 zeros for the first), so editing, removing or reordering any row breaks the chain from
that row on. Appends are serialized (a PostgreSQL advisory lock; SQLite's IMMEDIATE transactions serialize
writers anyway) so two writers never chain onto the same predecessor.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from audit.models import ActorType, AuditEvent

GENESIS_HASH = "0" * 64
# Arbitrary constant: the advisory-lock key every append takes (pg_advisory_xact_lock is per database).
_CHAIN_LOCK_KEY = 0x6A75_6469_7401
HASHED_FIELDS = (
    "occurred_at", "actor_type", "actor", "action", "object_type", "object_id", "summary", "before", "after",
)


@dataclass(frozen=True)
class Actor:
    """Who made a change: a person (a username) or automation (a task or component name)."""

    name: str
    type: str

    @classmethod
    def person(cls, user: Any) -> Actor:
        """``request.user`` (or any user); an anonymous user is refused, a change needs someone."""
        if user is None or not getattr(user, "is_authenticated", False):
            raise ValueError("an audited change by a person needs an authenticated user")
        return cls(name=user.get_username(), type=ActorType.PERSON)

    @classmethod
    def automation(cls, name: str) -> Actor:
        """A task or component, e.g. ``certificates.renew_certificate``."""
        if not name:
            raise ValueError("an automation actor needs a name (the task or component)")
        return cls(name=name, type=ActorType.AUTOMATION)


def _json_safe(value: Any) -> Any:
    """What a JSONField will give back: round-trip once so the hash covers exactly what is stored."""
    if value is None:
        return None
    return json.loads(json.dumps(value, default=str))


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def canonical_payload(fields: dict[str, Any], prev_hash: str) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same bytes on every database and Python version."""
    data = {name: fields[name] for name in HASHED_FIELDS}
    data["occurred_at"] = _timestamp(data["occurred_at"])
    data["prev_hash"] = prev_hash
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_hash(fields: dict[str, Any], prev_hash: str) -> str:
    return hashlib.sha256(canonical_payload(fields, prev_hash)).hexdigest()


def event_hash(event: AuditEvent) -> str:
    return compute_hash({name: getattr(event, name) for name in HASHED_FIELDS}, event.prev_hash)


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])


def record_event(
    actor: Actor | str,
    action: str,
    obj: Model | None = None,
    before: Any = None,
    after: Any = None,
    summary: str = "",
    actor_type: str = ActorType.AUTOMATION,
) -> AuditEvent:
    """Append one event. ``actor`` is an :class:`Actor` or a plain name with ``actor_type``.

    Call it inside the transaction that makes the change, so the change and its record commit together.
    ``before``/``after`` must hold no secrets (pass the fields that matter, not whole rows with keys).
    """
    if isinstance(actor, Actor):
        actor_name, actor_type = actor.name, actor.type
    else:
        actor_name = actor
    if actor_type not in ActorType.values:
        raise ValueError(f"actor_type {actor_type!r}: use one of {', '.join(ActorType.values)}")
    if not actor_name:
        raise ValueError("an audit event needs an actor")
    if not action:
        raise ValueError("an audit event needs an action, e.g. 'certificate.renewed'")
    fields: dict[str, Any] = {
        # Stored with microseconds on both SQLite and PostgreSQL, so the hashed timestamp survives a reload.
        "occurred_at": timezone.now(),
        "actor_type": str(actor_type),
        "actor": actor_name[:150],
        "action": action[:100],
        "object_type": obj._meta.label_lower if obj is not None else "",
        "object_id": str(obj.pk) if obj is not None and obj.pk is not None else "",
        "summary": summary[:500],
        "before": _json_safe(before),
        "after": _json_safe(after),
    }
    with transaction.atomic():
        _lock_chain()
        last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        prev_hash = last or GENESIS_HASH
        return AuditEvent.objects.create(**fields, prev_hash=prev_hash, hash=compute_hash(fields, prev_hash))


def record_person_event(user: Any, action: str, **kwargs: Any) -> AuditEvent:
    """A change made by someone in admin or the API (``request.user``)."""
    return record_event(Actor.person(user), action, **kwargs)


def record_automation_event(task_name: str, action: str, **kwargs: Any) -> AuditEvent:
    """A change made by a task or component (pass the task's name, e.g. ``self.name``)."""
    return record_event(Actor.automation(task_name), action, **kwargs)


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    reason: str

    def __str__(self) -> str:
        return f"audit event #{self.event_id}: {self.reason}"


def verify_chain() -> tuple[int, ChainBreak | None]:
    """Walk the chain in insertion order: (events checked, the first link that does not hold, or None)."""
    prev_hash = GENESIS_HASH
    prev_id: int | None = None
    checked = 0
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        checked += 1
        if event.prev_hash != prev_hash:
            after = f"event #{prev_id}" if prev_id is not None else "the start of the chain"
            reason = f"prev_hash does not match {after} (an event was removed or reordered)"
            return checked, ChainBreak(event.id, reason)
        if event_hash(event) != event.hash:
            return checked, ChainBreak(event.id, "hash does not match its content (the row was edited)")
        prev_hash, prev_id = event.hash, event.id
    return checked, None
