"""One ACME order, driven to a downloaded certificate, resumable after a crash at any step.

Every step is stored on the ``AcmeOrder`` row before the next one talks to the CA (order URL, key, CSR,
status), so a redelivered task picks the order up where it stopped: pending → answer the challenges, ready →
finalize, processing → poll, valid → download the same certificate again (the fingerprint constraint then
makes it the same version).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from certificates import x509
from certificates.acme_client import AcmeClient, AcmeError, Challenge, LocalError, OrderState, ReplacesRejected
from certificates.models import (
    AcmeAccount,
    AcmeChallenge,
    AcmeOrder,
    Certificate,
    ChallengeType,
    OrderStatus,
)
from certificates.services import seams

logger = logging.getLogger(__name__)

LIVE = (OrderStatus.PENDING, OrderStatus.AUTHORIZING, OrderStatus.FINALIZING)


def _test_hold(step: str) -> None:
    """Test-only pause (``CERT_TEST_HOLD=step:seconds``, WORKER_ENV=test) so a crash test can SIGKILL the
    worker at a known point of an order in flight."""
    spec = settings.CERT_TEST_HOLD
    if not spec or settings.WORKER_ENV != "test":
        return
    name, _, seconds = spec.partition(":")
    if name == step:
        logger.warning("CERT_TEST_HOLD: holding at %s for %ss", step, seconds)
        time.sleep(float(seconds or 30))


def check_domains(domains: list[str], challenge_type: str, has_dns_server: bool) -> list[str]:
    """Normalized domains, or ``AcmeError(permanent)`` naming what is wrong. The one set of request rules, used
    before an order (nothing is sent to the CA) and by the admin form and commands (nothing is saved)."""
    if not domains:
        raise AcmeError("the certificate lists no domains", error_type=LocalError.BAD_DOMAIN, permanent=True)
    normalized: list[str] = []
    for name in domains:
        try:
            norm = x509.validate_domain_name(str(name), allow_wildcard=True)
        except x509.DomainNameError as exc:
            raise AcmeError(f"invalid domain name {name!r}: {exc}", error_type=LocalError.BAD_DOMAIN,
                            permanent=True) from exc
        if norm.startswith("*.") and challenge_type == ChallengeType.HTTP_01:
            raise AcmeError(f"{name} is a wildcard, and wildcard names need dns-01: wildcards can only be "
                            "validated with dns-01, not http-01", error_type=LocalError.WILDCARD_HTTP01, permanent=True)
        normalized.append(norm)
    if challenge_type == ChallengeType.DNS_01 and not has_dns_server:
        raise AcmeError("dns-01 needs a DNS update server on the certificate", error_type=LocalError.DNS_CONFIG,
                        permanent=True)
    return normalized


def check_request(certificate: Certificate) -> list[str]:
    return check_domains(list(certificate.domains or []), certificate.challenge_type,
                         certificate.dns_server_id is not None)


def live_order(certificate: Certificate) -> AcmeOrder | None:
    return AcmeOrder.objects.filter(certificate=certificate, status__in=LIVE).first()


def create_order(certificate: Certificate, account: AcmeAccount, domains: list[str], replaces: str = "",
                 task_id: str = "") -> AcmeOrder:
    """A new order row with a fresh key and CSR, committed before the CA hears of it. If another live order
    appeared meanwhile (the database backstop of the lock), that one is returned."""
    key_pem = x509.generate_private_key(certificate.key_type)
    csr_pem = x509.make_csr(key_pem, domains)
    deadline = timezone.now() + dt.timedelta(seconds=settings.CERT_ORDER_DEADLINE_SECONDS)
    try:
        with transaction.atomic():
            return AcmeOrder.objects.create(
                certificate=certificate, account=account, status=OrderStatus.PENDING, domains=domains,
                challenge_type=certificate.challenge_type, key_pem=key_pem, csr_pem=csr_pem, replaces=replaces,
                deadline=deadline, task_id=task_id[:64])
    except IntegrityError:
        existing = live_order(certificate)
        if existing is None:
            raise
        return existing


def finish_order(order: AcmeOrder, status: str, error: str = "", error_type: str = "",
                 retry_after: dt.datetime | None = None) -> None:
    order.status = status
    order.error = error[:4000]
    order.error_type = error_type[:200]
    order.retry_after = retry_after
    order.finished_at = timezone.now()
    order.save(update_fields=["status", "error", "error_type", "retry_after", "finished_at", "updated_at"])
    cleanup_challenges(order)


def cleanup_challenges(order: AcmeOrder) -> None:
    """Withdraw this order's HTTP-01 tokens from the Gateways (DNS-01 records are removed by ``_dns``)."""
    deleted, _ = AcmeChallenge.objects.filter(order=order).delete()
    if deleted:
        seams.publish_on_commit("acme_challenges", order.certificate.gateway_group)


def _save(order: AcmeOrder, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(order, name, value)
    order.save(update_fields=[*fields, "updated_at"])


def drive_order(order: AcmeOrder, client: AcmeClient, profile: str = "") -> str:
    """Take ``order`` from wherever it is to a downloaded fullchain PEM, or raise ``AcmeError``."""
    certificate = order.certificate
    remaining = (order.deadline - timezone.now()).total_seconds()
    if remaining <= 0:
        raise AcmeError("order passed its deadline", error_type=LocalError.DEADLINE)
    deadline = time.monotonic() + remaining
    if not order.order_url:
        try:
            state = client.new_order(order.domains, profile=profile, replaces=order.replaces)
        except ReplacesRejected as exc:
            logger.info("order %s: CA refused replaces (%s); ordering without it", order.pk, exc)
            _save(order, replaces="")
            state = client.new_order(order.domains, profile=profile)
        _save(order, order_url=state.url, status=OrderStatus.AUTHORIZING)
    else:
        state = client.get_order(order.order_url)
    _test_hold("ordered")
    while True:
        if state.status == "pending":
            _satisfy_challenges(order, client, state, deadline)
            state = client.wait_order(order.order_url, {"ready", "processing", "valid"}, deadline)
        elif state.status == "ready":
            state = client.finalize(state, order.csr_pem)
            _save(order, status=OrderStatus.FINALIZING)
            _test_hold("finalizing")
        elif state.status == "processing":
            state = client.wait_order(order.order_url, {"valid"}, deadline)
        elif state.status == "valid" and state.certificate_url:
            return client.download(state.certificate_url)
        elif state.status == "invalid":
            raise AcmeError(state.error or "the CA marked the order invalid",
                            error_type=state.error_type or "urn:ietf:params:acme:error:unauthorized")
        else:
            raise AcmeError(f"unexpected order status {state.status!r}", error_type=LocalError.CLIENT)
        if certificate.pk != order.certificate_id:  # pragma: no cover (defensive)
            raise AssertionError("order switched certificate")


def _satisfy_challenges(order: AcmeOrder, client: AcmeClient, state: OrderState, deadline: float) -> None:
    challenges = client.pending_challenges(state, order.challenge_type)
    if not challenges:
        return
    if order.challenge_type == ChallengeType.HTTP_01:
        _publish_http01(order, challenges)
    else:
        _dns_publish(order, challenges, deadline)
    _test_hold("authorizing")  # tokens published (and ACKed), not yet answered: the CA has not validated
    for challenge in challenges:
        client.answer(challenge)


def _publish_http01(order: AcmeOrder, challenges: list[Challenge]) -> None:
    """Store the tokens, push them to every Gateway of the certificate's group and wait for their ACKs, so
    the CA finds them whichever instance it reaches."""
    AcmeChallenge.objects.bulk_create(
        [AcmeChallenge(order=order, domain=c.domain, token=c.token, key_authorization=c.key_authorization)
         for c in challenges],
        ignore_conflicts=True,  # a resumed order re-stores the same tokens
    )
    # concurrent orders share one publish (and so one version for the Gateways to apply and ACK)
    versions = seams.publish_shared("acme_challenges", order.certificate.gateway_group)
    started = time.monotonic()
    ok, reason = seams.wait_for_acks(versions, settings.CERT_CHALLENGE_ACK_TIMEOUT)
    logger.debug("order %s: challenge versions %s acked=%s in %.3fs", order.pk, [v.pk for v in versions], ok,
                 time.monotonic() - started)
    if not ok:
        raise AcmeError(f"the Gateways did not take the challenge tokens: {reason}", error_type=LocalError.PUSH)


def _dns_publish(order: AcmeOrder, challenges: list[Challenge], deadline: float) -> None:
    """Add the TXT records in one TSIG-signed RFC 2136 update and wait until the server answers them."""
    from certificates import dns01

    server = order.certificate.dns_server
    assert server is not None
    target = dns01.UpdateTarget.from_model(server)
    records = [(("*." if c.wildcard else "") + c.domain, c.dns_txt_value) for c in challenges]
    known = [list(r) for r in order.dns_records]
    _save(order, dns_records=known + [list(r) for r in records if list(r) not in known])  # before the update
    timeout = min(float(server.propagation_timeout_seconds), max(1.0, deadline - time.monotonic()))
    try:
        dns01.publish_and_wait(target, records, timeout=timeout)
    except dns01.Dns01Error as exc:
        raise AcmeError(f"DNS-01: {exc}", error_type=LocalError.DNS) from exc


def dns_cleanup(order: AcmeOrder) -> None:
    """Remove the TXT records added for ``order``, by this attempt or one that crashed (best effort: a leftover
    TXT is harmless, and is forgotten once tried)."""
    if not order.dns_records or order.certificate.dns_server is None:
        return
    from certificates import dns01

    try:
        dns01.remove_txt_records(dns01.UpdateTarget.from_model(order.certificate.dns_server),
                                 [(name, value) for name, value in order.dns_records])
    except dns01.Dns01Error:
        logger.warning("order %s: DNS-01 cleanup failed", order.pk, exc_info=True)
    _save(order, dns_records=[])
