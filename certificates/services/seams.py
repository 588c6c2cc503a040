"""Calls across app seams (audit trail, push plane, Gateway groups, notifications), kept in one place: the rest
of the app imports no other app's models or services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import Model

from audit import approvals  # noqa: F401 - re-exported: certificate approvals use the one shared mechanism
from audit import services as audit
from audit.models import ApprovalRequest  # noqa: F401 - re-exported with approvals
from gateways.models import GatewayGroup, ResourceVersion
from gateways.services import publish_coalesced, publish_desired_state, register_resource, request_publish
from gateways.services import wait_for_acks as wait_for_gateway_acks
from integrations import services as integrations
from integrations.services import Severity


def record(action: str, obj: Model | None = None, *, summary: str = "", after: Any = None,
           before: Any = None, actor: Any = "certificates") -> None:
    """Append an audit event inside the caller's transaction (``actor`` a user means a person)."""
    if hasattr(actor, "is_authenticated"):
        audit.record_person_event(actor, action, obj=obj, before=before, after=after, summary=summary)
    else:
        audit.record_automation_event(str(actor), action, obj=obj, before=before, after=after, summary=summary)


def gateway_group(name: str) -> GatewayGroup | None:
    """The Gateway group called ``name``, if a Gateway ever named it."""
    return GatewayGroup.objects.filter(name=name).first()


def gateway_group_by_id(pk: int | None) -> GatewayGroup | None:
    return GatewayGroup.objects.filter(pk=pk).first() if pk is not None else None


def register_builder(resource_type: str, build: Callable[[Any], dict[str, Any]]) -> None:
    """Tell the push plane how to build ``resource_type`` for one group."""
    register_resource(resource_type, build)


def publish(resource_type: str, group: Any = None, actor: str = "automation") -> list[ResourceVersion]:
    """Publish the desired state of ``resource_type`` for ``group`` (None: every group). Returns versions."""
    return list(publish_desired_state(resource_type, group=group, actor=actor))


def publish_shared(resource_type: str, group: Any) -> list[ResourceVersion]:
    """Publish ``group``'s state, folded with concurrent callers in this process; returns once a version holding
    the caller's committed rows is stored (call it outside a transaction)."""
    return publish_coalesced(resource_type, group)


def publish_on_commit(resource_type: str, group: Any = None, min_interval: float = 0.0) -> None:
    """Publish once the current transaction commits (the push plane reads committed rows), coalesced with
    concurrent requests so a burst of renewals rebuilds the certificate set a few times, not once each;
    ``min_interval`` spaces those rebuilds (see ``gateways.services.request_publish``)."""
    transaction.on_commit(lambda: request_publish(resource_type, group, min_interval=min_interval))


def wait_for_acks(versions: list[ResourceVersion], timeout: float) -> tuple[bool, str]:
    """(ok, reason): every connected instance ACKed ``versions``, or why not."""
    if not versions:
        return True, ""
    result = wait_for_gateway_acks(versions, timeout)
    if result.instances == 0:  # "all connected ACKed" is vacuous: nobody serves the token
        return False, "no Gateway instance is connected to serve the HTTP-01 tokens"
    if result.ok:
        return True, ""
    parts = [f"version {v} rejected by {', '.join(f'{i}: {e}' for i, e in who.items())}"
             for v, who in result.rejected.items()]
    parts += [f"version {v} not acknowledged by {', '.join(who)}" for v, who in result.pending.items()]
    if result.timed_out:
        parts.append(f"timed out after {timeout:g}s")
    return False, "; ".join(parts) or repr(result)


def notify(kind: str, severity: Severity, subject: str, *, dedup_key: str, context: dict[str, Any]) -> int:
    """Alert people through the integrations app (pending rows; its senders deliver them)."""
    return integrations.notify(kind, severity, subject, dedup_key=dedup_key, context=context)


def register_certificate_requester(fn: Callable[[int, str], str]) -> None:
    """Give the gateways app ``fn(group_id, domain) -> outcome``: its ``GetCertificate`` calls it for a name no
    certificate of the caller's group covers, and puts the outcome into the NOT_FOUND message."""
    from gateways.services import register_certificate_requester as register

    register(fn)
