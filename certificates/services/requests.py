"""Certificate requests: filed by a person or a Gateway, checked against the group's policy and by pre-flight
(names resolve, CAA allows the CA), approved by a second person through ``audit.approvals`` (or automatically
where the policy says so), then issued through the renewal service.

Every rule is here, so admin, ``manage.py request_certificate`` and the API cannot differ. The approval itself is
``audit.approvals.approve`` / ``reject``: it refuses the requester, whatever the entry point.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from certificates import preflight
from certificates.acme_client import AcmeError
from certificates.models import (
    AcmeAccount,
    Certificate,
    CertificatePolicy,
    CertificateRequest,
    ChallengeType,
    DnsUpdateServer,
    KeyType,
    RequestSource,
    RequestState,
)
from certificates.services import catalog, seams
from certificates.services.issuance import check_domains
from certificates.services.seams import ApprovalRequest, approvals

logger = logging.getLogger(__name__)

ISSUE_ACTION = "certificates.issue"
APPROVE_PERMISSION = "certificates.approve_certificaterequest"
RATE_WINDOW_SECONDS = 3600


class RequestRefused(Exception):
    """The request breaks a rule (``rule`` names it); nothing was created."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{message} (rule: {rule})")
        self.rule = rule


# ---------------------------------------------------------------- policy


def _under(name: str, suffix: str) -> bool:
    base = name[2:] if name.startswith("*.") else name
    suffix = suffix.strip().lower().strip(".")
    return bool(suffix) and (base == suffix or base.endswith("." + suffix))


def check_policy(policy: CertificatePolicy | None, domains: list[str], issuer: AcmeAccount) -> list[str]:
    """The rules passed, as notes for the admin page; ``RequestRefused`` naming the first rule broken."""
    if policy is None:
        raise RequestRefused("policy", "the group has no certificate policy: nothing may be requested for it")
    if len(domains) > policy.max_names:
        raise RequestRefused("max_names", f"{len(domains)} names requested; the group's policy allows at most "
                                          f"{policy.max_names}")
    notes = [f"max_names: {len(domains)} <= {policy.max_names}"]
    for name in domains:
        if name.startswith("*.") and not policy.allow_wildcards:
            raise RequestRefused("allow_wildcards", f"{name} is a wildcard and the group's policy allows none")
        if not any(_under(name, s) for s in policy.allowed_suffixes):
            allowed = ", ".join(policy.allowed_suffixes) or "none"
            raise RequestRefused("allowed_suffixes", f"{name} is not under a suffix the group may hold ({allowed})")
    notes.append(f"allowed_suffixes: every name under {', '.join(policy.allowed_suffixes)}")
    if any(n.startswith("*.") for n in domains):
        notes.append("allow_wildcards: yes")
    if not policy.issuers.filter(pk=issuer.pk).exists():
        allowed = ", ".join(policy.issuers.values_list("name", flat=True)) or "none"
        raise RequestRefused("issuers", f"issuer {issuer.name} is not allowed for the group ({allowed})")
    notes.append(f"issuers: {issuer.name} allowed")
    return notes


def policy_for(group: Any) -> CertificatePolicy | None:
    return CertificatePolicy.objects.filter(group=group).first()


def _auto_approves(policy: CertificatePolicy, domains: list[str], user: Any) -> bool:
    if user is None or policy.trusted_role_id is None or not policy.auto_approve_suffixes:
        return False
    if not user.groups.filter(pk=policy.trusted_role_id).exists():
        return False
    return all(any(_under(n, s) for s in policy.auto_approve_suffixes) for n in domains)


# ---------------------------------------------------------------- pre-flight


def run_preflight(request: CertificateRequest) -> bool:
    """Run and store the checks (shown on the request's page); True when every one passed."""
    checks = preflight.run(list(request.domains), ca_identifier=request.issuer.caa_identifier,
                           http01=request.challenge_type == ChallengeType.HTTP_01,
                           resolver=request.issuer.preflight_resolver)
    request.preflight = [c.as_dict() for c in checks]
    request.preflight_at = timezone.now()
    failed = [c for c in checks if not c.ok]
    if failed:
        request.error = "pre-flight refused: " + "; ".join(f"{c.check} {c.name}: {c.detail}" for c in failed)
    CertificateRequest.objects.filter(pk=request.pk).update(preflight=request.preflight,
                                                            preflight_at=request.preflight_at, error=request.error)
    return not failed


# ---------------------------------------------------------------- filing


def _normalize(domains: list[str], challenge_type: str, dns_server: DnsUpdateServer | None) -> list[str]:
    try:
        names = check_domains([d.strip() for d in domains if d.strip()], challenge_type, dns_server is not None)
    except AcmeError as exc:
        raise RequestRefused("names", str(exc)) from exc
    return list(dict.fromkeys(names))


def _dedupe_key(domains: list[str]) -> str:
    return ",".join(sorted(domains))[:2000]


def validate_request(domains: list[str], group: Any, issuer: AcmeAccount, challenge_type: str,
                     dns_server: DnsUpdateServer | None) -> tuple[list[str], list[str]]:
    """(normalized names, policy notes) or ``RequestRefused`` naming the rule broken. Changes nothing (forms use it)."""
    names = _normalize(domains, challenge_type, dns_server)
    return names, check_policy(policy_for(group), names, issuer)


def file_request(*, domains: list[str], group: Any, issuer: AcmeAccount, requested_by: Any, justification: str,
                 key_type: str = KeyType.EC256, challenge_type: str = ChallengeType.HTTP_01,
                 dns_server: DnsUpdateServer | None = None) -> CertificateRequest:
    """A person's request. Refused (``RequestRefused``, nothing created) outside the group's policy or without a
    justification; else stored with its pre-flight results: refused there (state ``refused``), approved at once
    by the policy's auto-approval rule, or waiting for a second person."""
    if requested_by is None or not getattr(requested_by, "is_authenticated", False):
        raise RequestRefused("requester", "a request needs an authenticated person")
    if not justification.strip():
        raise RequestRefused("justification", "say why the certificate is needed")
    names, notes = validate_request(domains, group, issuer, challenge_type, dns_server)
    policy = policy_for(group)
    assert policy is not None
    auto = _auto_approves(policy, names, requested_by)
    if auto:
        notes.append("auto-approve: requester in the trusted role, names under an auto-approve suffix")
    request = _create(names, group, issuer, RequestSource.PERSON, requested_by, requested_by.get_username(),
                      justification, key_type, challenge_type, dns_server, notes)
    _after_filing(request, auto)
    request.refresh_from_db()
    return request


def _create(names: list[str], group: Any, issuer: AcmeAccount, source: str, user: Any, who: str,
            justification: str, key_type: str, challenge_type: str, dns_server: DnsUpdateServer | None,
            notes: list[str]) -> CertificateRequest:
    with transaction.atomic():
        request = CertificateRequest.objects.create(
            domains=names, dedupe_key=_dedupe_key(names), group=group, issuer=issuer, key_type=key_type,
            challenge_type=challenge_type, dns_server=dns_server, justification=justification, source=source,
            requested_by=user, requested_by_name=who, policy_notes=notes)
        seams.record("certificate_request.filed", request, actor=user or f"gateway group {group}",
                     summary=f"{who} requests {', '.join(names)} for {group}",
                     after={"domains": names, "group": str(group), "issuer": issuer.name, "source": source,
                            "justification": justification[:500]})
    return request


def _after_filing(request: CertificateRequest, auto: bool) -> None:
    """Pre-flight, then auto-approval or an approval request for a second person."""
    if not run_preflight(request):
        with transaction.atomic():
            CertificateRequest.objects.filter(pk=request.pk).update(state=RequestState.REFUSED,
                                                                    finished_at=timezone.now())
            seams.record("certificate_request.refused", request, summary=f"request {request.pk}: {request.error}"[:500],
                         after={"preflight": request.preflight})
        return
    if auto:
        with transaction.atomic():
            CertificateRequest.objects.filter(pk=request.pk).update(state=RequestState.APPROVED, auto_approved=True,
                                                                    decided_at=timezone.now())
            seams.record("certificate_request.auto_approved", request, summary=f"request {request.pk} auto-approved")
            _enqueue_issuance(request.pk)
        return
    approvals.request_approval(request, ISSUE_ACTION, request.requested_by or request.requested_by_name,
                               request.justification, permission=APPROVE_PERMISSION,
                               summary=f"certificate for {', '.join(request.domains)} ({request.group})")


# ---------------------------------------------------------------- on demand, from Gateways


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def _count(group_id: int, outcome: str) -> None:
    try:
        _redis().hincrby(f"certificates:ondemand:{group_id}", outcome, 1)
    except redis.RedisError:  # a count is not worth failing the Gateway's call
        logger.warning("could not count on-demand outcome %s for group %s", outcome, group_id)


def ondemand_counts(group_id: int) -> dict[str, int]:
    """How often each outcome answered a Gateway group (admin shows it on the policy)."""
    raw = _redis().hgetall(f"certificates:ondemand:{group_id}")
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}


def _rate_limited(policy: CertificatePolicy) -> bool:
    """Fixed hourly window per group in Redis: INCR then EXPIRE (the first call of the window sets it)."""
    window = int(timezone.now().timestamp()) // RATE_WINDOW_SECONDS
    key = f"certificates:ondemand:rate:{policy.group_id}:{window}"
    client = _redis()
    used = int(client.incr(key))
    if used == 1:
        client.expire(key, RATE_WINDOW_SECONDS * 2)
    return used > policy.gateway_requests_per_hour


def request_from_gateway(group_id: int, domain: str) -> str:
    """A Gateway of ``group_id`` has no certificate for ``domain``. Returns "pending" (one request waits, however
    often it asks), "issued" (approved and issued: the push delivers it), "outside-policy" (counted, nothing
    created), "rate-limited" (counted), "refused" (pre-flight) or "rejected" (a person said no)."""
    policy = CertificatePolicy.objects.select_related("group", "gateway_issuer").filter(group_id=group_id).first()
    try:
        names = _normalize([domain], ChallengeType.HTTP_01, None)
        if policy is None or policy.gateway_issuer is None:
            raise RequestRefused("gateway_issuer", "the group's policy names no issuer for on-demand requests")
        notes = check_policy(policy, names, policy.gateway_issuer)
    except RequestRefused as exc:
        logger.info("on-demand request for %s by group %s outside policy: %s", domain, group_id, exc)
        _count(group_id, "outside-policy")
        return "outside-policy"
    key = _dedupe_key(names)
    latest = CertificateRequest.objects.filter(group_id=group_id, dedupe_key=key).order_by("-created_at").first()
    if latest is not None and latest.state in (RequestState.PENDING, RequestState.APPROVED):
        _count(group_id, "pending")
        return "pending"
    if latest is not None and latest.state in (RequestState.ISSUED, RequestState.REJECTED, RequestState.REFUSED):
        # a person decided (or CAA forbids): a Gateway asking again does not reopen it
        _count(group_id, latest.state)
        return latest.state
    if _rate_limited(policy):
        _count(group_id, "rate-limited")
        return "rate-limited"
    try:
        request = _create(names, policy.group, policy.gateway_issuer, RequestSource.GATEWAY, None,
                          f"gateway group {policy.group.name}", f"on-demand: a Gateway of {policy.group.name} was "
                          f"asked for {names[0]} and holds no certificate for it", KeyType.EC256,
                          ChallengeType.HTTP_01, None, notes)
    except IntegrityError:  # another call created it a moment ago (uniq_pending_cert_request)
        _count(group_id, "pending")
        return "pending"
    _after_filing(request, auto=False)
    request.refresh_from_db()
    _count(group_id, "created")
    return "refused" if request.state == RequestState.REFUSED else "pending"


# ---------------------------------------------------------------- decisions and issuance


def approval_for(request: CertificateRequest) -> ApprovalRequest | None:
    return approvals.pending_for(request, ISSUE_ACTION)


def approve_request(request: CertificateRequest, user: Any, comment: str = "") -> CertificateRequest:
    approval = approval_for(request)
    if approval is None:
        raise approvals.ApprovalError(f"request {request.pk} is {request.state}: nothing to approve")
    approvals.approve(approval, user, comment)
    request.refresh_from_db()
    return request


def reject_request(request: CertificateRequest, user: Any, comment: str) -> CertificateRequest:
    approval = approval_for(request)
    if approval is None:
        raise approvals.ApprovalError(f"request {request.pk} is {request.state}: nothing to reject")
    approvals.reject(approval, user, comment)
    request.refresh_from_db()
    return request


def _notify_requester(request: CertificateRequest, what: str, detail: str) -> None:
    seams.notify("certificate_request." + what,
                 seams.Severity.MEDIUM if what in ("failed", "refused") else seams.Severity.INFO,
                 f"certificate request {request.pk} ({', '.join(request.domains)}) {what}",
                 dedup_key=f"certificate-request:{request.pk}:{what}",
                 context={"request_id": request.pk, "domains": request.domains, "requester": request.requested_by_name,
                          "detail": detail[:1000]})


def on_issue_decided(approval: ApprovalRequest, decision: str) -> None:
    """Runs inside the deciding transaction (audit.approvals): mark the request, tell the requester, and on
    approval enqueue issuance once the decision commits."""
    request = CertificateRequest.objects.select_for_update().filter(pk=approval.subject_id).first()
    if request is None:
        raise approvals.ApprovalError("the certificate request no longer exists")
    if request.state != RequestState.PENDING:
        raise approvals.ApprovalError(f"request {request.pk} is {request.state}, not pending")
    approved = decision == "approved"
    request.state = RequestState.APPROVED if approved else RequestState.REJECTED
    request.decided_at = timezone.now()
    if not approved:
        request.finished_at = request.decided_at
    request.save(update_fields=["state", "decided_at", "finished_at"])
    _notify_requester(request, decision, approval.comment)
    if approved:
        _enqueue_issuance(request.pk)


def _enqueue_issuance(request_id: int) -> None:
    from certificates import tasks

    transaction.on_commit(lambda: tasks.issue_certificate_request.delay(request_id))


def _certificate_for(request: CertificateRequest) -> Certificate:
    """The request's certificate, created once (a redelivered task finds it), through the audited catalog.
    ``renew_after`` stays empty so the beat scan never orders before the pre-flight below ran."""
    if request.certificate_id is not None:
        return Certificate.objects.get(pk=request.certificate_id)
    base = slugify(request.domains[0].replace("*", "wildcard"))[:100] or "cert"
    cert = Certificate(name=f"{base}-r{request.pk}", common_name=request.domains[0], domains=list(request.domains),
                       key_type=request.key_type, challenge_type=request.challenge_type, dns_server=request.dns_server,
                       gateway_group=request.group, renew_after=None)
    with transaction.atomic():
        catalog.save_certificate(cert, actor=f"certificate request {request.pk}", issuers=[request.issuer])
        CertificateRequest.objects.filter(pk=request.pk).update(certificate=cert)
    request.certificate = cert
    return cert


def _finish(request: CertificateRequest, state: str, error: str = "") -> None:
    with transaction.atomic():
        done = CertificateRequest.objects.filter(pk=request.pk, state=RequestState.APPROVED).update(
            state=state, error=error[:4000], finished_at=timezone.now())
        if done:
            request.state, request.error = state, error
            seams.record(f"certificate_request.{state}", request,
                         summary=f"request {request.pk}: {state}" + (f": {error[:300]}" if error else ""))
            _notify_requester(request, state, error)


def issue_request(request_id: int) -> CertificateRequest | None:
    """Issue an approved request: pre-flight again (DNS may have changed since filing), then the first order
    through the renewal service. Safe to run twice: only an ``approved`` request is worked on."""
    from certificates.services import renewal

    request = CertificateRequest.objects.select_related("issuer", "group").filter(pk=request_id).first()
    if request is None or request.state != RequestState.APPROVED:
        return request
    if not run_preflight(request):
        _finish(request, RequestState.FAILED, request.error)
        return request
    cert = _certificate_for(request)
    if cert.current_version_id is not None:  # issued by an earlier run that stopped before marking the request
        _finish(request, RequestState.ISSUED)
        return request
    result = renewal.renew_certificate(cert.pk, force=True)
    if result.outcome == "issued":
        _finish(request, RequestState.ISSUED)
    elif result.outcome == "failed":
        _finish(request, RequestState.FAILED, result.error)
    return request  # locked: the holder of the lock finishes it; a later run sees the certificate issued


def describe(request: CertificateRequest) -> str:
    """One line for lists and the command."""
    names = ", ".join(request.domains)
    return f"{request.pk}: {names} for {request.group} by {request.requested_by_name}: {request.state}"


def register() -> None:
    approvals.register_decision_handler(ISSUE_ACTION, on_issue_decided)

