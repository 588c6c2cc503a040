"""Admin for certificates (list, bad input refused, actions audited, keys never shown) and /metrics."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from certificates.models import AcmeAccount, AcmeOrder, Certificate, CertificateVersion, OrderStatus
from tests.certificates_support import install_expiring_version, make_account, make_certificate, unique

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    user = User.objects.create_superuser("alice", "alice@example.test", "pw")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def account(pebble) -> AcmeAccount:  # type: ignore[no-untyped-def]
    return make_account(pebble)


def test_changelist_shows_expiry_state_issuer_and_last_error(admin_client, account) -> None:  # type: ignore[no-untyped-def]
    cert = make_certificate([f"{unique('list')}.example.test"], account)
    install_expiring_version(cert, days_left=5)
    Certificate.objects.filter(pk=cert.pk).update(last_error="urn:ietf:params:acme:error:rateLimited: too many")
    page = admin_client.get(reverse("admin:certificates_certificate_changelist")).content.decode()
    assert cert.name in page and account.name in page and "rateLimited: too many" in page
    assert '<td class="field-days_left">4</td>' in page, "days left: 5 days minus the moments since, rounded down"


def test_admin_and_list_certificates_agree_on_days_left(admin_client, account) -> None:  # type: ignore[no-untyped-def]
    cert = make_certificate([f"{unique('days')}.example.test"], account)
    Certificate.objects.filter(pk=cert.pk).update(not_after=timezone.now() + timedelta(days=1825, hours=23))
    page = admin_client.get(reverse("admin:certificates_certificate_changelist")).content.decode()
    assert '<td class="field-days_left">1825</td>' in page  # not "1826.0"
    out = io.StringIO()
    call_command("list_certificates", stdout=out)
    row = next(line for line in out.getvalue().splitlines() if line.startswith(cert.name))
    assert row.split()[4] == "1825", row  # name state date time days


def test_keys_are_never_shown(admin_client, account) -> None:  # type: ignore[no-untyped-def]
    cert = make_certificate([f"{unique('keys')}.example.test"], account)
    version = install_expiring_version(cert, days_left=50)
    AcmeOrder.objects.create(certificate=cert, account=account, status=OrderStatus.FAILED, domains=cert.domains,
                             challenge_type="http-01", key_pem=version.key_pem, error="boom",
                             deadline=version.created_at)
    order = AcmeOrder.objects.get(certificate=cert)
    for url in (reverse("admin:certificates_certificateversion_change", args=[version.pk]),
                reverse("admin:certificates_acmeorder_change", args=[order.pk]),
                reverse("admin:certificates_acmeaccount_change", args=[account.pk]),
                reverse("admin:certificates_certificate_change", args=[cert.pk])):
        page = admin_client.get(url).content.decode()
        assert "PRIVATE KEY" not in page, url


@pytest.mark.parametrize(("domains", "challenge", "message"), [
    ('["bad_name!.example.test"]', "http-01", "bad_name!.example.test"),
    ('["*.wild.example.test"]', "http-01", "wildcard names need dns-01"),
])
def test_bad_input_is_refused_in_the_form(admin_client, domains, challenge, message) -> None:  # type: ignore[no-untyped-def]
    response = admin_client.post(reverse("admin:certificates_certificate_add"), {
        "name": unique("bad"), "domains": domains, "key_type": "ec256", "challenge_type": challenge,
        "auto_renew": "on", "certificateissuer_set-TOTAL_FORMS": "0", "certificateissuer_set-INITIAL_FORMS": "0",
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
        "orders-TOTAL_FORMS": "0", "orders-INITIAL_FORMS": "0",
    })
    assert response.status_code == 200 and message in response.content.decode()
    assert not Certificate.objects.exists()


def test_renew_now_clears_the_backoff_and_is_audited(admin_client, account, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    cert = make_certificate([f"{unique('now')}.example.test"], account)
    Certificate.objects.filter(pk=cert.pk).update(next_attempt_at="2099-01-01T00:00:00Z", consecutive_failures=4)
    with django_capture_on_commit_callbacks(execute=False) as hooks:
        admin_client.post(reverse("admin:certificates_certificate_changelist"),
                          {"action": "renew_now", "_selected_action": [cert.pk]})
    cert.refresh_from_db()
    assert cert.next_attempt_at is None and len(hooks) == 1, "backoff cleared, one renewal enqueued"
    event = AuditEvent.objects.get(action="certificate.renew_now")
    assert event.actor == "alice" and event.object_id == str(cert.pk)


def test_roll_back_points_at_the_older_version_and_is_audited(admin_client, account) -> None:  # type: ignore[no-untyped-def]
    cert = make_certificate([f"{unique('rb')}.example.test"], account)
    older = install_expiring_version(cert, days_left=40)
    newer = install_expiring_version(cert, days_left=80)
    assert cert.current_version == newer
    admin_client.post(reverse("admin:certificates_certificate_changelist"),
                      {"action": "roll_back", "_selected_action": [cert.pk]})
    cert.refresh_from_db()
    assert cert.current_version == older
    assert AuditEvent.objects.filter(action="certificate.rollback", actor="alice").exists()
    assert CertificateVersion.objects.filter(certificate=cert).count() == 2, "rollback adds no version"


def test_metrics_expose_expiry_and_renewals(client, account) -> None:  # type: ignore[no-untyped-def]
    cert = make_certificate([f"{unique('m')}.example.test"], account)
    install_expiring_version(cert, days_left=5)
    AcmeOrder.objects.create(certificate=cert, account=account, status=OrderStatus.FAILED, domains=cert.domains,
                             challenge_type="http-01", deadline=cert.created_at)
    body = client.get("/metrics").content.decode()
    line = next(x for x in body.splitlines() if x.startswith("gw_certificate_expiry_seconds") and cert.name in x)
    assert 4.9 * 86400 < float(line.split()[-1]) <= 5 * 86400 and 'temporary="false"' in line
    assert 'gw_certificate_renewals_total{result="failed"} 1.0' in body
    assert 'gw_certificates{state="valid"} 1.0' in body
