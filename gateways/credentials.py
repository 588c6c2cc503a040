"""Gateway credentials: who a Gateway is and which group it reads, decided when its certificate is issued.

The push plane trusts only this: the verified client certificate's fingerprint names a ``GatewayCredential``
row, whose ``name`` is the instance id and whose ``group`` is the only group it may read. Issuing, revoking and
moving are changes a person makes, so each is audited here (admin and commands call these functions).
Revoking or moving sends a notice on Redis so every run_grpc replica drops its cached identity and closes the
credential's open streams at once (the replicas' reconcile re-reads revocations as a backstop).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import services as audit

from . import notify, pki
from .models import GatewayCredential, GatewayGroup, GatewayInstance

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_DAYS = 3650


class CredentialError(ValueError):
    """A request to issue, revoke or move a credential that cannot be done (the message says why)."""


@dataclass(frozen=True)
class Identity:
    """What the push plane knows about a caller, from its credential only."""

    credential_id: int
    fingerprint: str
    instance_id: str
    group_id: int
    group_name: str


def identity_for(fingerprint: str) -> Identity | str:
    """The identity a certificate fingerprint stands for, or the reason it is refused."""
    cred = (GatewayCredential.objects.select_related("group").filter(fingerprint_sha256=fingerprint).first())
    if cred is None:
        return ("client certificate is not a registered Gateway credential; issue one with "
                "`manage.py issue_gateway_cert NAME --group GROUP`")
    if cred.revoked_at is not None:
        return f"client certificate {cred.serial} was revoked at {cred.revoked_at:%Y-%m-%d %H:%M:%S}Z; issue a new one"
    return Identity(cred.pk, fingerprint, cred.name, cred.group_id, cred.group.name)


def revoked_since(since: dt.datetime) -> list[str]:
    """Fingerprints revoked at or after ``since`` (indexed: the replicas' reconcile backstop)."""
    return list(GatewayCredential.objects.filter(revoked_at__gte=since).values_list("fingerprint_sha256", flat=True))


def as_actor(actor: Any) -> audit.Actor:
    """A user (a person), an Actor, or a component name (automation)."""
    return actor if isinstance(actor, audit.Actor) else (
        audit.Actor.person(actor) if hasattr(actor, "is_authenticated") else audit.Actor.automation(str(actor)))


def _group(name: str) -> GatewayGroup:
    group = GatewayGroup.objects.filter(name=name).first()
    if group is None:
        known = ", ".join(GatewayGroup.objects.values_list("name", flat=True)) or "none"
        raise CredentialError(f"no Gateway group {name!r} (known: {known}); create it first in admin or with "
                              f"`manage.py gateway_group {name}`")
    return group


@dataclass(frozen=True)
class IssuedCredential:
    credential: GatewayCredential
    issued: pki.Issued
    ca_pem: bytes


def issue_credential(name: str, group: str, *, days: int = 365, actor: Any = "issue_gateway_cert") -> IssuedCredential:
    """A client certificate for the Gateway ``name`` in ``group`` (the CA is created on first use)."""
    if not NAME_RE.fullmatch(name or ""):
        raise CredentialError(f"invalid NAME {name[:64]!r}: 1-128 letters, digits, '.', '_' and '-'")
    if not 1 <= days <= MAX_DAYS:
        raise CredentialError(f"--days must be between 1 and {MAX_DAYS} (got {days}): a certificate valid for less "
                              "than a day would be expired or nearly so when it is installed")
    grp = _group(group)
    ca_cert, ca_key = pki.ensure_ca(Path(settings.GRPC_CA_CERT), Path(settings.GRPC_CA_KEY))
    issued = pki.issue(ca_cert, ca_key, name, days=days)
    with transaction.atomic():
        cred = GatewayCredential.objects.create(name=name, group=grp, serial=issued.serial,
                                                fingerprint_sha256=issued.fingerprint_sha256,
                                                not_after=issued.not_after)
        audit.record_event(as_actor(actor), "gateway.credential_issued", obj=cred,
                           after={"name": name, "group": grp.name, "serial": issued.serial,
                                  "not_after": issued.not_after},
                           summary=f"client certificate {issued.serial} for Gateway {name} in group {grp.name}")
    return IssuedCredential(cred, issued, Path(settings.GRPC_CA_CERT).read_bytes())


def register_credential(name: str, group: str, issued: pki.Issued, *, actor: Any = "automation") -> GatewayCredential:
    """Record a certificate signed elsewhere by the Worker's CA (tests, benchmarks, an external signer)."""
    if not NAME_RE.fullmatch(name or ""):
        raise CredentialError(f"invalid NAME {name[:64]!r}: 1-128 letters, digits, '.', '_' and '-'")
    grp = _group(group)
    with transaction.atomic():
        cred = GatewayCredential.objects.create(name=name, group=grp, serial=issued.serial,
                                                fingerprint_sha256=issued.fingerprint_sha256,
                                                not_after=issued.not_after)
        audit.record_event(as_actor(actor), "gateway.credential_registered", obj=cred,
                           after={"name": name, "group": grp.name, "serial": issued.serial},
                           summary=f"client certificate {issued.serial} for Gateway {name} in group {grp.name}")
    return cred


def _close_streams(fingerprints: list[str], *, revoked: bool, reason: str) -> None:
    notice = {"fingerprints": fingerprints, "revoked": revoked, "reason": reason[:200]}
    transaction.on_commit(lambda: notify.publish(notify.credentials_channel(), notice))


def revoke_credentials(credentials: list[GatewayCredential], *, actor: Any, reason: str = "") -> int:
    """Refuse these certificates from now on, on every RPC of every replica; open streams are closed."""
    now = timezone.now()
    done: list[str] = []
    with transaction.atomic():
        for cred in credentials:
            if GatewayCredential.objects.filter(pk=cred.pk, revoked_at__isnull=True).update(
                    revoked_at=now, revoked_reason=reason[:200]) == 0:
                continue  # already revoked: nothing changes, nothing to audit
            done.append(cred.fingerprint_sha256)
            audit.record_event(as_actor(actor), "gateway.credential_revoked", obj=cred,
                               before={"revoked_at": None}, after={"revoked_at": now, "reason": reason[:200]},
                               summary=f"revoked client certificate {cred.serial} of Gateway {cred.name}")
        if done:
            _close_streams(done, revoked=True, reason=reason or "revoked")
    return len(done)


def move_credential(cred: GatewayCredential, group: str, *, actor: Any) -> GatewayCredential:
    """Move a Gateway (its credential and its registration) to another group; its streams reconnect into it."""
    grp = _group(group)
    with transaction.atomic():
        cred = GatewayCredential.objects.select_for_update().select_related("group").get(pk=cred.pk)
        if cred.group_id == grp.pk:
            return cred
        before = cred.group.name
        cred.group = grp
        cred.save(update_fields=["group"])
        GatewayInstance.objects.filter(instance_id=cred.name).update(group=grp)
        audit.record_event(as_actor(actor), "gateway.credential_moved", obj=cred, before={"group": before},
                           after={"group": grp.name},
                           summary=f"Gateway {cred.name} moved from group {before} to {grp.name}")
        _close_streams([cred.fingerprint_sha256], revoked=False, reason=f"moved to group {grp.name}; reconnect")
    return cred
