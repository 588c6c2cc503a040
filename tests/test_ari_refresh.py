"""The renewal-information refresh job (RFC 9773 §4.3) against the real Pebble behind the ARI proxy of
tests/peers/ari_proxy.py: a window the CA moves earlier after issuance brings renew_after into it, Retry-After
(bounded) sets the next poll, only due certificates are asked for, a failed poll changes nothing but backs off,
and the selection is one indexed query whatever the number of certificates not due."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from certificates import x509
from certificates.models import AcmeAccount, Certificate, CertificateVersion, DnsUpdateServer
from certificates.services import scan
from certificates.services.ari import WINDOW_MOVED, refresh_renewal_info
from certificates.services.policy import ARI_CHECK_DEFAULT, ari_check_due, due_certificates
from certificates.services.renewal import renew_certificate
from tests.certificates_support import install_expiring_version, make_account, make_certificate, unique

if TYPE_CHECKING:  # not imported at run time: pytest loads the module as a plugin (assertion rewriting)
    from tests.peers.ari_proxy import AriProxy

pytestmark = [pytest.mark.django_db(transaction=True)]

HOUR = dt.timedelta(hours=1)
SLACK = dt.timedelta(minutes=2)


def _issued(proxy: AriProxy, bind_server) -> Certificate:  # type: ignore[no-untyped-def]
    """A certificate really issued by Pebble (DNS-01 into BIND) through the proxy, with no ARI window then."""
    account = make_account(proxy.pebble, directory_url=proxy.directory_url, tls_ca_bundle=proxy.ca_bundle)
    dns = DnsUpdateServer.objects.create(
        name=unique("bind"), server=bind_server.host, port=bind_server.port, zone=bind_server.zone,
        tsig_key_name=bind_server.tsig_key_name, tsig_algorithm=bind_server.tsig_algorithm,
        tsig_secret=bind_server.tsig_secret, propagation_timeout_seconds=10)
    cert = make_certificate([f"{unique('ari-refresh')}.{bind_server.zone}"], account, challenge_type="dns-01",
                            dns_server=dns)
    proxy.window = None  # the CA has no window for it at issuance: the local policy applies
    result = renew_certificate(cert.pk)
    assert result.outcome == "issued", result.error
    cert.refresh_from_db()
    return cert


def _polled(proxy: AriProxy, *, due: bool = True, ari_offered: bool | None = True) -> Certificate:
    """A real-looking current version issued by an account at the proxy (no Pebble order: fast)."""
    account = make_account(proxy.pebble, directory_url=proxy.directory_url, tls_ca_bundle=proxy.ca_bundle,
                           ari_offered=ari_offered)
    cert = make_certificate([f"{unique('ari-poll')}.example.test"], account)
    version = install_expiring_version(cert, days_left=60)
    CertificateVersion.objects.filter(pk=version.pk).update(account=account,
                                                            ari_cert_id=f"{unique('aki')}.{version.serial_hex}")
    now = timezone.now()
    Certificate.objects.filter(pk=cert.pk).update(ari_next_check_at=now - HOUR if due else now + HOUR)
    cert.refresh_from_db()
    return cert


def _make_due(cert: Certificate) -> None:
    Certificate.objects.filter(pk=cert.pk).update(ari_next_check_at=timezone.now() - dt.timedelta(seconds=1))


@pytest.mark.slow
def test_a_window_moved_earlier_after_issuance_brings_renew_after_into_it(ari_pebble: AriProxy, bind_server) -> None:  # type: ignore[no-untyped-def]
    cert = _issued(ari_pebble, bind_server)
    version = cert.current_version
    assert version is not None
    policy_due = x509.renewal_due_at(version.not_before, version.not_after, days_before=30)
    assert cert.renew_after == policy_due
    issued_at = timezone.now()
    assert issued_at + ARI_CHECK_DEFAULT - SLACK <= cert.ari_next_check_at <= issued_at + ARI_CHECK_DEFAULT
    assert AcmeAccount.objects.get(pk=version.account_id).ari_offered is True
    asked = len(ari_pebble.ari_requests)
    assert refresh_renewal_info()["checked"] == 0, "the first poll is not due yet"
    assert len(ari_pebble.ari_requests) == asked

    # the CA moves the window well before the local policy (e.g. ahead of a mass revocation)
    start = (timezone.now() + dt.timedelta(days=2)).replace(microsecond=0)
    ari_pebble.window = (start, start + dt.timedelta(hours=12))
    _make_due(cert)
    assert refresh_renewal_info() == {"checked": 1, "moved": 1, "failed": 0, "no_ari": 0}
    assert ari_pebble.ari_requests[asked:] == [version.ari_cert_id]
    cert.refresh_from_db()
    assert start <= cert.renew_after <= start + dt.timedelta(hours=12) < policy_due
    event = AuditEvent.objects.get(action=WINDOW_MOVED, object_id=str(cert.pk))
    assert event.after["renew_after"] == cert.renew_after.isoformat()
    assert cert.pk not in set(due_certificates(timezone.now()).values_list("id", flat=True))
    assert cert.pk in set(due_certificates(cert.renew_after).values_list("id", flat=True))

    # polled again with the same window: the random moment stays put (no creeping towards the start)
    moment = cert.renew_after
    _make_due(cert)
    assert refresh_renewal_info()["moved"] == 0
    cert.refresh_from_db()
    assert cert.renew_after == moment and AuditEvent.objects.filter(action=WINDOW_MOVED).count() == 1

    # the window has started (here: already passed): the daily scan finds the certificate due now
    now = timezone.now()
    ari_pebble.window = (now - 2 * HOUR, now - HOUR)
    _make_due(cert)
    assert refresh_renewal_info()["moved"] == 1
    cert.refresh_from_db()
    assert now - 2 * HOUR <= cert.renew_after <= now - HOUR
    renewals: list[int] = []
    scan.scan_expiring_certificates(renewals.append, lambda pk: None)  # no atomic block: enqueued at once
    assert cert.pk in renewals


def test_a_window_later_than_the_policy_never_delays_renewal(ari_pebble: AriProxy) -> None:
    cert = _polled(ari_pebble)
    before = cert.renew_after
    ari_pebble.window = (before + dt.timedelta(days=3), before + dt.timedelta(days=4))
    assert refresh_renewal_info()["moved"] == 0
    cert.refresh_from_db()
    assert cert.renew_after == before
    # renew_after unknown: the window applies, capped by the policy
    Certificate.objects.filter(pk=cert.pk).update(renew_after=None)
    _make_due(cert)
    assert refresh_renewal_info()["moved"] == 1
    cert.refresh_from_db()
    version = cert.current_version
    assert version is not None
    assert cert.renew_after == x509.renewal_due_at(version.not_before, version.not_after, days_before=30)


@pytest.mark.parametrize(("retry_after", "expected"), [
    (7200, dt.timedelta(hours=2)),  # the CA's word
    (5, dt.timedelta(hours=1)),  # never a storm
    (30 * 86400, dt.timedelta(hours=24)),  # never blind for weeks
])
def test_retry_after_sets_the_next_check_within_bounds(ari_pebble: AriProxy, retry_after: int,
                                                       expected: dt.timedelta) -> None:
    cert = _polled(ari_pebble)
    ari_pebble.window = (cert.renew_after - dt.timedelta(days=1), cert.renew_after + dt.timedelta(days=1))
    ari_pebble.retry_after_seconds = retry_after
    before = timezone.now()
    assert refresh_renewal_info()["checked"] == 1
    cert.refresh_from_db()
    assert before + expected - SLACK <= cert.ari_next_check_at <= timezone.now() + expected + SLACK


def test_a_certificate_whose_check_is_not_due_is_not_asked_for(ari_pebble: AriProxy) -> None:
    due = _polled(ari_pebble)
    later = _polled(ari_pebble, due=False)
    unknown_account = _polled(ari_pebble, ari_offered=None)  # directory not seen yet: polled, and learnt
    no_ari = _polled(ari_pebble, ari_offered=False)
    ari_pebble.window = (timezone.now() + dt.timedelta(days=1), timezone.now() + dt.timedelta(days=2))
    assert refresh_renewal_info()["checked"] == 2
    ids = {c.pk: c.current_version.ari_cert_id for c in (due, later, unknown_account, no_ari)}
    assert sorted(ari_pebble.ari_requests) == sorted([ids[due.pk], ids[unknown_account.pk]])
    assert AcmeAccount.objects.get(pk=unknown_account.current_version.account_id).ari_offered is True
    later_check = later.ari_next_check_at
    later.refresh_from_db()
    assert later.ari_next_check_at == later_check


def test_an_ari_fetch_error_leaves_renew_after_and_backs_off(ari_pebble: AriProxy) -> None:
    cert = _polled(ari_pebble)
    before = cert.renew_after
    ari_pebble.window = None  # the CA answers 404 with a problem document (and no Retry-After)
    started = timezone.now()
    assert refresh_renewal_info() == {"checked": 0, "moved": 0, "failed": 1, "no_ari": 0}
    assert ari_pebble.ari_requests == [cert.current_version.ari_cert_id]
    cert.refresh_from_db()
    assert cert.renew_after == before
    assert cert.ari_next_check_at >= started + ARI_CHECK_DEFAULT - SLACK, "backs off, not polled each hour"
    assert not AuditEvent.objects.filter(action=WINDOW_MOVED).exists()
    assert refresh_renewal_info()["failed"] == 0 and len(ari_pebble.ari_requests) == 1, "not retried at once"


def test_an_unreachable_ca_backs_off_every_certificate_of_its_account(ari_pebble: AriProxy) -> None:
    cert = _polled(ari_pebble)
    account = AcmeAccount.objects.get(pk=cert.current_version.account_id)
    account.directory_url = "https://127.0.0.1:1/dir"  # nothing listens on port 1
    account.save(update_fields=["directory_url"])
    assert refresh_renewal_info()["failed"] == 1
    cert.refresh_from_db()
    assert cert.ari_next_check_at > timezone.now() + HOUR


def test_the_selection_is_one_indexed_query_and_costs_o_due(ari_pebble: AriProxy) -> None:
    due = [_polled(ari_pebble) for _ in range(2)]
    account = AcmeAccount.objects.get(pk=due[0].current_version.account_id)
    # many certificates not due (and some with nothing to poll): they must cost nothing
    now = timezone.now()
    Certificate.objects.bulk_create([
        Certificate(name=unique("idle"), common_name="idle.example.test", domains=["idle.example.test"],
                    ari_next_check_at=now + HOUR if i % 2 else None) for i in range(200)])
    ari_pebble.window = (now + dt.timedelta(days=700), now + dt.timedelta(days=701))  # later: no move
    with CaptureQueriesContext(connection) as queries:
        assert refresh_renewal_info()["checked"] == 2
    # one selection, then one UPDATE per due certificate (the account's ari_offered is already known)
    assert len(queries) == 1 + len(due), [q["sql"] for q in queries]
    assert "LIMIT 500" in queries[0]["sql"], "the batch is bounded in the query"
    account.refresh_from_db()
    assert account.ari_offered is True

    sql, params = ari_check_due(timezone.now())[:500].query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("ANALYZE certificates_certificate")  # statistics for the rows just made
        cur.execute("SET LOCAL enable_seqscan = off")  # a small table would be seq-scanned otherwise
        cur.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert "cert_ari_check_idx" in plan, plan


def test_the_batch_is_bounded_oldest_check_first(ari_pebble: AriProxy) -> None:
    certs = [_polled(ari_pebble) for _ in range(3)]
    for age, cert in enumerate(certs):
        Certificate.objects.filter(pk=cert.pk).update(ari_next_check_at=timezone.now() - (age + 1) * HOUR)
    ari_pebble.window = (timezone.now() + dt.timedelta(days=1), timezone.now() + dt.timedelta(days=2))
    assert refresh_renewal_info(batch=2)["checked"] == 2
    assert sorted(ari_pebble.ari_requests) == sorted(c.current_version.ari_cert_id for c in certs[1:])
