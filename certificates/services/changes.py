"""Risky changes that wait for a second person (``audit.approvals``): revoking a version, moving a certificate to
another Gateway group, exporting private keys. The approval carries the change out (revoke, move); an export is
made afterwards, once, by the person who asked. An emergency revocation with a written reason happens at once,
audited and notified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from certificates.models import (
    Certificate,
    CertificateChange,
    CertificateChangeKind,
    CertificateIssuer,
    CertificateVersion,
    RequestState,
)
from certificates.services import catalog, seams
from certificates.services.revocation import REASONS, revoke_version
from certificates.services.seams import ApprovalRequest, approvals

ACTIONS = {CertificateChangeKind.REVOKE: "certificates.revoke", CertificateChangeKind.MOVE: "certificates.move",
           CertificateChangeKind.EXPORT_KEYS: "certificates.export_keys"}
PERMISSION = "certificates.approve_certificaterequest"
EMERGENCY_REASON_MIN = 20  # a written reason, not "x"


class ChangeRefused(Exception):
    pass


def _person(user: Any) -> Any:
    if user is None or not getattr(user, "is_authenticated", False):
        raise ChangeRefused("a risky change needs an authenticated person")
    return user


def _file(change: CertificateChange, justification: str, summary: str) -> CertificateChange:
    if not justification.strip():
        raise ChangeRefused("say why (a justification is required)")
    with transaction.atomic():
        change.save()
        seams.record(f"certificate_change.{change.kind}.requested", change, actor=change.requested_by,
                     summary=summary, after={"justification": justification[:500]})
        approvals.request_approval(change, ACTIONS[CertificateChangeKind(change.kind)], change.requested_by,
                                   justification, permission=PERMISSION, summary=summary)
    return change


def request_revocation(version: CertificateVersion, user: Any, *, reason: str, justification: str
                       ) -> CertificateChange:
    if reason not in REASONS:
        raise ChangeRefused(f"unknown revocation reason {reason!r}; use one of {', '.join(REASONS)}")
    if version.revoked_at is not None:
        raise ChangeRefused(f"version {version.serial_hex} is already revoked")
    change = CertificateChange(kind=CertificateChangeKind.REVOKE, certificate=version.certificate, version=version,
                               reason=reason, requested_by=_person(user))
    return _file(change, justification, f"revoke {version.certificate.name} #{version.serial_hex[:16]} ({reason})")


def request_move(cert: Certificate, target_group: Any, user: Any, *, justification: str) -> CertificateChange:
    if cert.gateway_group_id == getattr(target_group, "pk", None):
        raise ChangeRefused(f"{cert.name} is already in {target_group}")
    _check_target_policy(cert, target_group)
    change = CertificateChange(kind=CertificateChangeKind.MOVE, certificate=cert, target_group=target_group,
                               requested_by=_person(user))
    return _file(change, justification, f"move {cert.name} to group {target_group}")


def request_key_export(user: Any, *, justification: str) -> CertificateChange:
    change = CertificateChange(kind=CertificateChangeKind.EXPORT_KEYS, requested_by=_person(user))
    return _file(change, justification, "export every certificate with its private key")


def _check_target_policy(cert: Certificate, group: Any) -> None:
    """A certificate may only move to a group whose policy would let it be requested there."""
    from certificates.services.requests import RequestRefused, check_policy, policy_for

    first = CertificateIssuer.objects.filter(certificate=cert).select_related("account").order_by("priority").first()
    try:
        if first is None:
            raise RequestRefused("issuers", f"{cert.name} has no issuer")
        check_policy(policy_for(group), list(cert.domains), first.account)
    except RequestRefused as exc:
        raise ChangeRefused(f"group {group} may not hold {cert.name}: {exc}") from exc


def on_change_decided(approval: ApprovalRequest, decision: str) -> None:
    """Inside the deciding transaction: a rejected change is closed; an approved move is made here (a database
    change, published on commit); an approved revocation runs here too (ACME revoke: if the CA refuses, the
    ApprovalError rolls the approval back and the change stays pending)."""
    change = CertificateChange.objects.select_for_update().filter(pk=approval.subject_id).first()
    if change is None or change.state != RequestState.PENDING:
        raise approvals.ApprovalError("this change is no longer pending")
    if decision != "approved":
        CertificateChange.objects.filter(pk=change.pk).update(state=RequestState.REJECTED)
        return
    if change.kind == CertificateChangeKind.MOVE:
        assert change.certificate is not None
        cert = Certificate.objects.select_for_update().get(pk=change.certificate.pk)
        try:
            _check_target_policy(cert, change.target_group)
        except ChangeRefused as exc:
            raise approvals.ApprovalError(str(exc)) from exc
        cert.gateway_group = change.target_group
        catalog.save_certificate(cert, actor=approval.decided_by)
        CertificateChange.objects.filter(pk=change.pk).update(state=RequestState.ISSUED)
    elif change.kind == CertificateChangeKind.REVOKE:
        assert change.version is not None
        try:
            revoke_version(change.version, change.reason, actor=approval.decided_by)
        except Exception as exc:
            raise approvals.ApprovalError(f"the CA did not revoke: {exc}") from exc
        CertificateChange.objects.filter(pk=change.pk).update(state=RequestState.ISSUED)
    else:  # an export is approved now and made later by its requester
        CertificateChange.objects.filter(pk=change.pk).update(state=RequestState.APPROVED)


def emergency_revoke(version: CertificateVersion, user: Any, *, reason: str, written_reason: str) -> None:
    """Revoke at once, without waiting: a written reason is required; audited and notified."""
    _person(user)
    if len(written_reason.strip()) < EMERGENCY_REASON_MIN:
        raise ChangeRefused(f"an emergency revocation needs a written reason (at least {EMERGENCY_REASON_MIN} "
                            "characters) saying why it cannot wait for a second person")
    cert = version.certificate
    with transaction.atomic():
        seams.record("certificate.emergency_revocation", cert, actor=user,
                     summary=f"{cert.name}: emergency revocation of {version.serial_hex[:16]} by "
                             f"{user.get_username()}: {written_reason[:200]}",
                     after={"version_id": version.pk, "reason": reason, "written_reason": written_reason[:1000]})
        seams.notify("certificate.emergency_revocation", seams.Severity.CRITICAL,
                     f"{cert.name}: emergency revocation by {user.get_username()}",
                     dedup_key=f"emergency-revocation:{version.pk}",
                     context={"certificate": cert.name, "serial": version.serial_hex, "reason": reason,
                              "by": user.get_username(), "written_reason": written_reason[:1000]})
    revoke_version(version, reason, actor=user)


def export_with_keys(change: CertificateChange, user: Any, output: Path, passphrase: str) -> dict[str, int]:
    """Make an approved export, once, as the person who asked for it."""
    from certificates.backup import export_backup

    if change.kind != CertificateChangeKind.EXPORT_KEYS or change.state != RequestState.APPROVED:
        raise ChangeRefused(f"change {change.pk} is not an approved key export ({change.kind}, {change.state})")
    if change.requested_by_id != getattr(user, "pk", None):
        raise ChangeRefused(f"change {change.pk} was approved for {change.requested_by.get_username()}, not "
                            f"{getattr(user, 'username', user)}")
    claimed = CertificateChange.objects.filter(pk=change.pk, state=RequestState.APPROVED,
                                               used_at__isnull=True).update(used_at=timezone.now(),
                                                                            state=RequestState.ISSUED)
    if not claimed:
        raise ChangeRefused(f"change {change.pk} was used already")
    return export_backup(output, passphrase, actor=f"{user.get_username()} (approved change {change.pk})")


def register() -> None:
    for action in ACTIONS.values():
        approvals.register_decision_handler(action, on_change_decided)
