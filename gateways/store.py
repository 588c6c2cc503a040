"""Database work of a run_grpc replica (synchronous; the asyncio server runs it in worker threads).

Writes are batched: a burst of 1,000 ACKs becomes one transaction of a few bulk upserts, not 1,000.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from .models import GatewayGroup, GatewayInstance, InstanceResourceState, ResourceVersion
from .resources import update_message
from .services import desired_version


@dataclass(frozen=True)
class Registered:
    instance_pk: int
    group_id: int
    group_name: str
    parked: dict[str, int]    # type -> rejected version (never resent)
    acked: dict[str, int]     # type -> last version ACKed with the nonce it was sent with


@dataclass(frozen=True)
class LoadedVersion:
    resource_type: str
    group_id: int
    version: int
    created_at: datetime
    nonce: str                # in the message; an ACK must echo it (random: it cannot be guessed ahead)
    message_bytes: bytes      # the serialized WorkerMessage, shared by every stream of the group


def register_hello(instance_id: str, group_id: int, agent_version: str, identity: str, peer: str,
                   replica: str) -> Registered:
    """Record a stream's instance (its id and group come from its credential, never from the Hello)."""
    now = timezone.now()
    grp = GatewayGroup.objects.get(pk=group_id)
    inst, _ = GatewayInstance.objects.update_or_create(
        instance_id=instance_id,
        defaults={"group": grp, "agent_version": agent_version[:64], "client_identity": identity[:200],
                  "peer": peer[:200], "connected": True, "replica": replica[:128], "last_seen": now,
                  "connected_at": now},
    )
    # What the Hello reports running is a hint, never a record: acknowledged is only what was ACKed with a nonce.
    states = list(InstanceResourceState.objects.filter(instance=inst))
    return Registered(
        instance_pk=inst.pk, group_id=grp.pk, group_name=grp.name,
        parked={s.resource_type: s.rejected_version for s in states if s.rejected_version is not None},
        acked={s.resource_type: s.acked_version for s in states if s.acked_version is not None},
    )


def load_desired(keys: list[tuple[str, int]], nonce_prefix: str) -> list[LoadedVersion]:
    """The desired version of each (type, group id), decrypted and turned into a push message once."""
    out = []
    for rtype, group_id in keys:
        v = desired_version(rtype, group_id)
        if v is None:
            continue
        nonce = f"{nonce_prefix}-{v.pk}-{secrets.token_hex(6)}"
        msg = update_message(rtype, v.pk, nonce, v.checksum, bytes(v.payload))
        out.append(LoadedVersion(rtype, group_id, v.pk, v.created_at, nonce, msg.SerializeToString()))
    return out


def desired_ids(keys: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """Cheap check for the reconcile timer: newest version id per (type, group), no payload read."""
    out: dict[tuple[str, int], int] = {}
    groups = {g for _, g in keys}
    rows = (ResourceVersion.objects.filter(group_id__in=groups).order_by("resource_type", "group_id", "-id")
            .distinct("resource_type", "group_id").values_list("resource_type", "group_id", "id")) \
        if _pg() else ResourceVersion.objects.filter(group_id__in=groups).values_list(
            "resource_type", "group_id", "id")
    for rtype, group_id, vid in rows:
        if vid > out.get((rtype, group_id), 0):
            out[(rtype, group_id)] = vid
    return out


def _pg() -> bool:
    from django.db import connection
    return connection.vendor == "postgresql"


@dataclass
class Event:
    kind: str                 # "sent", "ack", "nack", "disconnect"
    instance_pk: int
    resource_type: str
    version: int
    nonce: str = ""
    error: str = ""
    at: datetime | None = None
    converge_seconds: float | None = None


def flush_events(events: list[Event], replica: str) -> None:
    """Apply a batch of sent/ack/nack events in one transaction (bulk upserts, latest event per row wins)."""
    by_kind: dict[str, dict[tuple[int, str], Event]] = {"sent": {}, "ack": {}, "nack": {}}
    gone: list[int] = []
    for e in events:
        if e.kind == "disconnect":
            gone.append(e.instance_pk)
        else:
            by_kind[e.kind][(e.instance_pk, e.resource_type)] = e
    fields = {
        "sent": ["sent_version", "sent_nonce", "sent_at"],
        "ack": ["acked_version", "acked_at", "last_converge_seconds"],
        "nack": ["rejected_version", "rejected_error", "rejected_at"],
    }
    with transaction.atomic():
        for kind, rows in by_kind.items():
            if not rows:
                continue
            objs = []
            for e in rows.values():
                st = InstanceResourceState(instance_id=e.instance_pk, resource_type=e.resource_type)
                if kind == "sent":
                    st.sent_version, st.sent_nonce, st.sent_at = e.version, e.nonce[:64], e.at
                elif kind == "ack":
                    st.acked_version, st.acked_at, st.last_converge_seconds = e.version, e.at, e.converge_seconds
                else:
                    st.rejected_version, st.rejected_error, st.rejected_at = e.version, e.error[:2000], e.at
                objs.append(st)
            InstanceResourceState.objects.bulk_create(
                objs, update_conflicts=True, unique_fields=["instance", "resource_type"], update_fields=fields[kind])
        if gone:
            now = timezone.now()
            GatewayInstance.objects.filter(pk__in=gone, replica=replica).update(
                connected=False, disconnected_at=now, last_seen=now)


def heartbeat(replica: str) -> None:
    GatewayInstance.objects.filter(replica=replica, connected=True).update(last_seen=timezone.now())


def release_replica(replica: str) -> None:
    GatewayInstance.objects.filter(replica=replica, connected=True).update(
        connected=False, disconnected_at=timezone.now())


def build_missing(group_id: int) -> None:
    """Desired state for every registered type this group has none of yet (first Gateway of a group)."""
    from .services import publish_group

    group = GatewayGroup.objects.filter(pk=group_id).first()
    if group is not None:
        publish_group(group, only_missing=True)


def group_by_name(name: str) -> GatewayGroup | None:
    return GatewayGroup.objects.filter(name=name).first()
