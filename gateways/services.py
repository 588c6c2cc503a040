"""Desired state and its delivery to the fleet. Other apps call only what is in this module.

Seam (the contract other apps rely on):

- ``register_resource(resource_type, builder)``: an app declares how to build the full state of the world
  for one resource type and one group. ``builder(group: GatewayGroup) -> dict`` returns JSON-able data:

  * ``certificates``: ``{"certificates": [{"name", "domains": [...], "cert_pem", "chain_pem", "key_pem",
    "temporary": bool, "serial", "fingerprint", "not_after": unix seconds, "version_id": int}]}``
  * ``acme_challenges``: ``{"challenges": [{"domain", "token", "key_authorization"}]}``
  * ``waf_rules`` / ``config``: ``{"content": "<file text>", "name": "..."}`` (later issues)
  * ``emergency_rules``: ``{"rules": [...]}`` (later issues)

- ``publish_desired_state(resource_type, group=None, actor="automation") -> list[ResourceVersion]``: rebuild
  the state for one group (or every group), store a new ResourceVersion where the content changed (an
  unchanged state is a no-op: same checksum, no new version), and after the transaction commits send a notice
  on Redis pub/sub so every run_grpc replica pushes it. Returns the desired version per group.

- ``wait_for_acks(versions, timeout) -> AckWait``: block until every connected instance of each version's group
  has ACKed that version (or a newer one), or a NACK arrives, or the timeout passes.

Implemented by the push-plane work (issue 4).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from audit import services as audit

from . import notify
from .credentials import (
    CredentialError,
    Identity,
    as_actor,
    issue_credential,
    move_credential,
    register_credential,
    revoke_credentials,
)
from .intake import LogIntake, register_certificate_requester, register_log_sink
from .models import DEFAULT_GROUP, GatewayGroup, GatewayInstance, InstanceResourceState, ResourceVersion
from .resources import (
    InvalidResource,
    builder_for,
    check_type,
    register_resource,
    registered_types,
    serialize,
    summarize,
    to_message,
    validate,
)

__all__ = [
    "AckWait", "InvalidResource", "publish_desired_state", "publish_coalesced", "request_publish",
    "register_resource", "registered_types",
    "wait_for_acks", "desired_version", "resync_instances", "create_group", "GroupError", "DEFAULT_GROUP",
    "CredentialError", "Identity", "issue_credential", "register_credential", "revoke_credentials", "move_credential",
    "LogIntake", "register_log_sink", "register_certificate_requester",
]

logger = logging.getLogger(__name__)


def _lock(resource_type: str, group_id: int) -> None:
    """Serialize publishers of one (type, group) so two concurrent ones cannot store the same state twice."""
    if connection.vendor == "postgresql":
        key = zlib.crc32(f"gw-publish:{resource_type}".encode())
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", [key - 2**31, group_id])


def desired_version(resource_type: str, group: GatewayGroup | int) -> ResourceVersion | None:
    group_id = group if isinstance(group, int) else group.pk
    return (ResourceVersion.objects.filter(resource_type=resource_type, group_id=group_id)
            .defer("payload").order_by("-id").first())  # the payload (MBs, encrypted) is not needed here


def publish_desired_state(resource_type: str, group: GatewayGroup | None = None,
                          actor: str = "automation") -> list[ResourceVersion]:
    """See the module docstring. Raises InvalidResource (and stores nothing) when a builder's data is bad."""
    check_type(resource_type)
    builder = builder_for(resource_type)
    groups = [group] if group is not None else list(GatewayGroup.objects.all())
    result: list[ResourceVersion] = []
    created: list[ResourceVersion] = []
    with transaction.atomic():
        for grp in groups:
            _lock(resource_type, grp.pk)
            data = builder(grp)
            if data is None:  # this group has no state of this type yet: nothing to store or push
                continue
            validate(resource_type, data)
            message = to_message(resource_type, data)
            payload, checksum = serialize(message)
            current = desired_version(resource_type, grp)
            if current is not None and current.checksum == checksum:
                result.append(current)
                continue
            version = ResourceVersion.objects.create(
                resource_type=resource_type, group=grp, payload=payload, checksum=checksum,
                summary=summarize(resource_type, message), created_by=actor[:150],
            )
            created.append(version)
            result.append(version)
        if created:
            notice = {"type": resource_type, "groups": [v.group_id for v in created],
                      "versions": [v.pk for v in created]}
            transaction.on_commit(lambda: notify.publish(notify.desired_channel(), notice))
    return result


class _Coalescer:
    """Concurrent publish requests for one key become as few publishes as possible, none of them lost.

    Each request takes the next generation of its key. One requester at a time is the key's runner: it publishes
    while requests are newer than the last publish it started, so every request is followed by a publish that
    starts after it (each committed change is included in some version). ``wait=True``: return only once such a
    publish has finished (a runner that fails leaves the key to the next waiter, which publishes itself).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._requested: dict[tuple[str, int | None], int] = {}
        self._published: dict[tuple[str, int | None], int] = {}
        self._running: set[tuple[str, int | None]] = set()
        self._last_start: dict[tuple[str, int | None], float] = {}

    def request(self, key: tuple[str, int | None], publish: Callable[[], object], wait: bool = False,
                min_interval: float = 0.0) -> None:
        """``min_interval``: the runner starts publishes of this key at most that often (the requests arriving
        meanwhile fold into the next one); for big states rebuilt by a stream of small changes."""
        with self._cond:
            generation = self._requested[key] = self._requested.get(key, 0) + 1
            while True:
                if self._published.get(key, 0) >= generation:
                    return
                if key not in self._running:
                    self._running.add(key)
                    break
                if not wait:
                    return
                self._cond.wait()
        try:
            while True:
                with self._cond:
                    target = self._requested[key]
                    if self._published.get(key, 0) >= target:
                        self._running.discard(key)
                        self._cond.notify_all()
                        return
                pause = self._last_start.get(key, float("-inf")) + min_interval - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                    with self._cond:
                        target = self._requested[key]
                self._last_start[key] = time.monotonic()
                publish()
                with self._cond:
                    self._published[key] = max(self._published.get(key, 0), target)
                    self._cond.notify_all()
        except BaseException:
            with self._cond:
                self._running.discard(key)
                self._cond.notify_all()
            raise


_coalescer = _Coalescer()


def request_publish(resource_type: str, group: GatewayGroup | None = None, actor: str = "automation",
                    min_interval: float = 0.0) -> None:
    """Publish soon, folded together with concurrent requests in this process (200 certificates issued at once
    become a few ``certificates`` versions, not 200 rebuilds of the whole set). Call it after your commit;
    it returns when this thread's part is done, without the version (use publish_coalesced to wait on one).
    ``min_interval``: publishes of this type and group start at most that often while requests keep coming."""
    check_type(resource_type)
    _coalescer.request((resource_type, group.pk if group is not None else None),
                       lambda: publish_desired_state(resource_type, group, actor=actor), min_interval=min_interval)


def publish_coalesced(resource_type: str, group: GatewayGroup | None = None,
                      actor: str = "automation") -> list[ResourceVersion]:
    """Like ``publish_desired_state``, folded together with concurrent requests in this process: returns once a
    publish that started after this call has committed, with the newest version of each group (which holds this
    caller's committed rows; groups without state of this type are left out). Call it after your commit."""
    check_type(resource_type)
    _coalescer.request((resource_type, group.pk if group is not None else None),
                       lambda: publish_desired_state(resource_type, group, actor=actor), wait=True)
    groups = [group] if group is not None else list(GatewayGroup.objects.all())
    return [v for v in (desired_version(resource_type, g) for g in groups) if v is not None]


class GroupError(ValueError):
    """A group that cannot be created (the message says why)."""


GROUP_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def create_group(name: str, description: str = "", *, actor: Any = "automation") -> GatewayGroup:
    """A new Gateway group (only people create groups, never a Gateway), with the current desired state of every
    registered type built for it, so a Gateway issued into it is served from its first RPC."""
    if not GROUP_NAME_RE.fullmatch(name or ""):
        raise GroupError(f"group name {name[:80]!r} must be 1-64 lowercase letters, digits, '-' and '_'")
    with transaction.atomic():
        group, created = GatewayGroup.objects.get_or_create(name=name, defaults={"description": description[:200]})
        if not created:
            raise GroupError(f"group {name!r} exists already")
        audit.record_event(as_actor(actor), "gateway.group_created", obj=group, after={"name": name},
                           summary=f"Gateway group {name} created")
        publish_group(group)
    return group


def publish_group(group: GatewayGroup, only_missing: bool = False) -> None:
    """Build every registered type for one group (a group made in admin goes through here too). ``only_missing``:
    just the types that have no version for it yet (a group made by the migration, a type registered later)."""
    have = set(ResourceVersion.objects.filter(group=group).values_list("resource_type", flat=True).distinct()) \
        if only_missing else set()
    for resource_type in registered_types():
        if resource_type in have:
            continue
        try:
            publish_desired_state(resource_type, group, actor="new-group")
        except InvalidResource as exc:  # one app's bad state must not keep the group from being created
            logger.warning("could not build %s for new group %s: %s", resource_type, group.name, exc)


@dataclass
class AckWait:
    """Outcome of wait_for_acks. Truthy when every connected instance ACKed."""

    ok: bool
    timed_out: bool = False
    waited_seconds: float = 0.0
    instances: int = 0                                              # connected instances that had to ACK
    pending: dict[int, list[str]] = field(default_factory=dict)     # version -> instance ids not yet ACKed
    rejected: dict[int, dict[str, str]] = field(default_factory=dict)  # version -> {instance id: error}

    def __bool__(self) -> bool:
        return self.ok


def _ack_status(versions: list[ResourceVersion]) -> AckWait:
    pending: dict[int, list[str]] = {}
    rejected: dict[int, dict[str, str]] = {}
    count = 0
    for v in versions:
        rows = (GatewayInstance.objects.filter(group_id=v.group_id, connected=True)
                .values_list("instance_id", "resource_states__resource_type", "resource_states__acked_version",
                             "resource_states__rejected_version", "resource_states__rejected_error"))
        seen: dict[str, bool] = {}
        for instance_id, rtype, acked, rejected_v, error in rows:
            ok = rtype == v.resource_type and acked is not None and acked >= v.pk
            seen[instance_id] = seen.get(instance_id, False) or ok
            if rtype == v.resource_type and rejected_v == v.pk:
                rejected.setdefault(v.pk, {})[instance_id] = error
        count += len(seen)
        late = sorted(i for i, ok in seen.items() if not ok and i not in rejected.get(v.pk, {}))
        if late:
            pending[v.pk] = late
    return AckWait(ok=not pending and not rejected, instances=count, pending=pending, rejected=rejected)


class _AckNotices:
    """One subscription to the ACK notice channel per process, shared by every ``wait_for_acks`` in it (thirty-two
    renewal threads waiting at once used to open thirty-two Redis connections and each re-read the database on
    every notice). A notice bumps a generation per resource type; a waiter re-reads only when a type it waits on
    moved. If Redis is unreachable the thread retries every second and waiters fall back to polling."""

    def __init__(self, url: str, channel: str) -> None:
        self.url, self.channel = url, channel
        self.cond = threading.Condition()
        self.generation = 0
        self.seen: dict[str, int] = {}  # resource type (or "*" for an unreadable notice) -> generation
        self.subscribed = False
        self.pid = os.getpid()
        threading.Thread(target=self._run, name="ack-notices", daemon=True).start()

    def _run(self) -> None:
        while True:
            pubsub = None
            try:
                pubsub = notify.client().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                with self.cond:
                    self.subscribed = True
                    self.cond.notify_all()  # waiters read the database again: a notice may predate this
                while True:
                    msg = pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    try:
                        types = [str(t) for t in json.loads(msg["data"]).get("types", [])]
                    except (ValueError, TypeError, AttributeError):
                        types = ["*"]
                    with self.cond:
                        self.generation += 1
                        for t in types:
                            self.seen[t] = self.generation
                        self.cond.notify_all()
            except Exception as exc:  # noqa: BLE001 - Redis gone: waiters poll; try again shortly
                logger.warning("ACK notices unavailable (%s); wait_for_acks polls", exc)
                with self.cond:
                    self.subscribed = False
                    self.generation += 1
                    self.seen["*"] = self.generation
                    self.cond.notify_all()
                time.sleep(1.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001, S110 - closing a broken connection
                        pass

    def moved(self, types: set[str], since: int) -> bool:
        return any(self.seen.get(t, 0) > since for t in (*types, "*"))

    def wait(self, types: set[str], since: int, timeout: float) -> None:
        """Until a notice for one of ``types`` newer than generation ``since`` arrives, or ``timeout``."""
        with self.cond:
            if not self.subscribed:
                self.cond.wait(timeout)  # woken early only when the subscription comes (back)
                return
            self.cond.wait_for(lambda: self.moved(types, since), timeout)


_ack_notices: dict[tuple[str, str], _AckNotices] = {}
_ack_notices_lock = threading.Lock()


def _notices() -> _AckNotices:
    from django.conf import settings

    key = (settings.REDIS_URL, notify.acks_channel())
    with _ack_notices_lock:
        listener = _ack_notices.get(key)
        if listener is None or listener.pid != os.getpid():  # a forked child has no listener thread
            listener = _ack_notices[key] = _AckNotices(*key)
        return listener


def wait_for_acks(versions: Iterable[ResourceVersion], timeout: float = 30.0) -> AckWait:
    """Block until every connected instance of each version's group ACKed it (or newer), a NACK, or timeout.

    Wakes on the replicas' ACK notice on Redis (one subscription per process, see ``_AckNotices``), and re-reads
    the database at least every 0.5 s in case a notice is lost. Call it outside a transaction (it must see other
    connections' commits).
    """
    versions = list(versions)
    types = {v.resource_type for v in versions}
    start = time.monotonic()
    deadline = start + timeout
    notices = _notices()
    while True:
        since = notices.generation  # read before the database: a notice after this wakes the next wait
        status = _ack_status(versions)
        status.waited_seconds = time.monotonic() - start
        if status.ok or status.rejected:
            return status
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            status.timed_out = True
            return status
        notices.wait(types, since, min(0.5, remaining))


def resync_instances(instance_ids: Iterable[int], *, actor: Any = "automation") -> int:
    """Forget what was sent to and parked for these instances, and end their open streams: each reconnects and
    is sent every desired version afresh (a parked version included). Audited per instance."""
    from .models import GatewayCredential

    ids = list(instance_ids)
    instances = list(GatewayInstance.objects.filter(pk__in=ids))
    with transaction.atomic():
        n = InstanceResourceState.objects.filter(instance_id__in=ids).update(
            sent_version=None, sent_nonce="", sent_at=None, rejected_version=None, rejected_error="",
            rejected_at=None)
        for inst in instances:
            audit.record_event(as_actor(actor), "gateway.resync", obj=inst,
                               summary=f"resync of Gateway {inst.instance_id}: sent and parked versions forgotten")
        fingerprints = list(GatewayCredential.objects.filter(
            name__in=[i.instance_id for i in instances], revoked_at__isnull=True)
            .values_list("fingerprint_sha256", flat=True))
        if fingerprints:
            notice = {"fingerprints": fingerprints, "revoked": False, "reason": "resync requested"}
            transaction.on_commit(lambda: notify.publish(notify.credentials_channel(), notice))
    return n


def mark_stale_disconnected(max_age_seconds: float) -> int:
    """Instances whose replica stopped refreshing last_seen (crashed) are no longer counted as connected."""
    cutoff = timezone.now() - timedelta(seconds=max_age_seconds)
    return GatewayInstance.objects.filter(connected=True).filter(
        Q(last_seen__lt=cutoff) | Q(last_seen__isnull=True)).update(connected=False, disconnected_at=timezone.now())


def announce_all() -> int:
    """Re-send a notice for every current desired version (the periodic reconcile's Redis half)."""
    count = 0
    seen: set[tuple[str, int]] = set()
    for rtype, group_id in ResourceVersion.objects.values_list("resource_type", "group_id").distinct():
        if (rtype, group_id) in seen:
            continue
        seen.add((rtype, group_id))
        v = desired_version(rtype, group_id)
        if v is not None:
            notify.publish(notify.desired_channel(), {"type": rtype, "groups": [group_id], "versions": [v.pk]})
            count += 1
    return count
