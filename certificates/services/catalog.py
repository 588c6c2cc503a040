"""What people declare: ACME accounts, DNS update servers, certificates and their issuers. Saved, deleted and
audited here (with what changed), so admin, the management commands and an API cannot differ. The forms shape
and check the input; these functions make the change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import Model

from certificates.models import AcmeAccount, Certificate, CertificateIssuer, DnsUpdateServer
from certificates.services import seams

# what the audit trail shows of each row; secrets are named when they change, never recorded
ACCOUNT_FIELDS = ("name", "directory_url", "contact_email", "eab_kid", "tls_ca_bundle", "trust_roots_pem", "profile")
ACCOUNT_SECRETS = ("key_pem", "eab_hmac_key")
DNS_FIELDS = ("name", "server", "port", "zone", "tsig_key_name", "tsig_algorithm", "propagation_timeout_seconds")
DNS_SECRETS = ("tsig_secret",)
CERT_FIELDS = ("name", "domains", "key_type", "challenge_type", "dns_server_id", "gateway_group_id", "profile",
               "auto_renew")


def _changes(obj: Model, fields: Sequence[str], secrets: Sequence[str] = ()
             ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(before, after) of the fields that differ from the stored row (before None: a new row)."""
    stored = type(obj)._default_manager.filter(pk=obj.pk).first() if obj.pk else None
    if stored is None:
        after = {f: getattr(obj, f) for f in fields}
        if secrets:
            after["secrets_set"] = [s for s in secrets if getattr(obj, s)]
        return None, after
    changed = [f for f in fields if getattr(stored, f) != getattr(obj, f)]
    before = {f: getattr(stored, f) for f in changed}
    after = {f: getattr(obj, f) for f in changed}
    if secret_changes := [s for s in secrets if getattr(stored, s) != getattr(obj, s)]:
        after["secrets_changed"] = secret_changes
    return before, after


def _save(obj: Model, kind: str, fields: Sequence[str], secrets: Sequence[str], actor: Any, summary: str) -> bool:
    """Save ``obj`` and record ``<kind>.created`` or ``<kind>.updated`` (nothing for an unchanged save)."""
    with transaction.atomic():
        before, after = _changes(obj, fields, secrets)
        obj.save()
        if before is None:
            seams.record(f"{kind}.created", obj, actor=actor, summary=summary, after=after)
        elif after:
            seams.record(f"{kind}.updated", obj, actor=actor, summary=summary, before=before, after=after)
    return before is None


def _delete(obj: Model, kind: str, fields: Sequence[str], actor: Any, summary: str) -> None:
    """Record then delete, in one transaction (a protected row raises and leaves no event)."""
    with transaction.atomic():
        seams.record(f"{kind}.deleted", obj, actor=actor, summary=summary,
                     before={f: getattr(obj, f) for f in fields})
        obj.delete()


def save_acme_account(account: AcmeAccount, *, actor: Any) -> bool:
    """Create or update an account (key and EAB secret already set by the form). True if created."""
    return _save(account, "acme_account", ACCOUNT_FIELDS, ACCOUNT_SECRETS, actor,
                 f"{account.name} at {account.directory_url}")


def delete_acme_account(account: AcmeAccount, *, actor: Any) -> None:
    _delete(account, "acme_account", ACCOUNT_FIELDS, actor, f"{account.name} at {account.directory_url}")


def save_dns_server(server: DnsUpdateServer, *, actor: Any) -> bool:
    return _save(server, "dns_server", DNS_FIELDS, DNS_SECRETS, actor, str(server))


def delete_dns_server(server: DnsUpdateServer, *, actor: Any) -> None:
    _delete(server, "dns_server", DNS_FIELDS, actor, str(server))


def save_certificate(cert: Certificate, *, actor: Any, issuers: Sequence[AcmeAccount] | None = None) -> bool:
    """Create or update a certificate, and its issuers (tried in the order given) when ``issuers`` is given.
    A changed group or name re-publishes the certificate set of the groups it left and joined."""
    with transaction.atomic():
        old_group = (Certificate.objects.filter(pk=cert.pk).values_list("gateway_group", flat=True).first()
                     if cert.pk else None)
        created = _save(cert, "certificate", CERT_FIELDS, (), actor, f"{cert.name}: {', '.join(cert.domains)}")
        if issuers is not None:
            set_issuers(cert, issuers, actor=actor)
        if cert.current_version_id is not None:
            seams.publish_on_commit("certificates", cert.gateway_group)
            if old_group != cert.gateway_group_id:
                seams.publish_on_commit("certificates", seams.gateway_group_by_id(old_group))
    return created


def set_issuers(cert: Certificate, accounts: Sequence[AcmeAccount], *, actor: Any) -> None:
    """Replace the certificate's issuers with ``accounts``, in priority order (audited when it changes)."""
    with transaction.atomic():
        before = issuer_names(cert)
        CertificateIssuer.objects.filter(certificate=cert).delete()
        CertificateIssuer.objects.bulk_create(
            [CertificateIssuer(certificate=cert, account=a, priority=p) for p, a in enumerate(accounts)])
        issuers_changed(cert, before, actor=actor)


def issuer_names(cert: Certificate) -> list[str]:
    return list(CertificateIssuer.objects.filter(certificate=cert).order_by("priority", "id")
                .values_list("account__name", flat=True))


def issuers_changed(cert: Certificate, before: list[str], *, actor: Any) -> None:
    """Record the issuer list when it differs from ``before`` (admin edits them in an inline formset)."""
    after = issuer_names(cert)
    if after != before:
        seams.record("certificate.issuers.changed", cert, actor=actor, summary=f"{cert.name}: {', '.join(after)}",
                     before={"issuers": before}, after={"issuers": after})


def delete_certificate(cert: Certificate, *, actor: Any) -> None:
    """Delete a certificate that never had a version (versions protect theirs), so nothing to withdraw."""
    _delete(cert, "certificate", CERT_FIELDS, actor, f"{cert.name}: {', '.join(cert.domains)}")
