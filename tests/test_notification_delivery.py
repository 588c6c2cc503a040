"""Notification senders and delivery against local HTTP/SMTP servers that record what they receive (no mocks)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import time

import pytest
from aiosmtpd.controller import Controller
from django.core import mail
from django.db import connection
from django.utils import timezone

from integrations import senders
from integrations.delivery import deliver, due_notifications, fail_abandoned_sends
from integrations.models import AlertThrottle, Notification, NotificationChannel, NotificationStatus
from integrations.services import Severity, notify
from tests.integrations_support import Recorder, pagerduty_schema_errors

pytestmark = pytest.mark.django_db

SECRET = "whsec-test-0f3c9a"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"


def channel(kind: str, target: str, secret: str | None = None, **fields: object) -> NotificationChannel:
    return NotificationChannel.objects.create(name=f"{kind}-{NotificationChannel.objects.count()}", kind=kind,
                                              target=target, secret=secret, **fields)


def deliver_all() -> list[str]:
    return [deliver(pk).status for pk in Notification.objects.order_by("pk").values_list("pk", flat=True)]


def test_webhook_is_signed_and_the_reference_verifier_refuses_replays(receiver: Recorder) -> None:
    channel("webhook", receiver.url(), SECRET)
    notify("certificate.failover", Severity.HIGH, "Certificate a is on a temporary certificate", "renewal failed",
           dedup_key="certificate.failover:1:2", context={"certificate": "a"})
    assert deliver_all() == ["sent"]
    (request,) = receiver.posts()
    ts, sig = request.headers[senders.TIMESTAMP_HEADER], request.headers[senders.SIGNATURE_HEADER]
    senders.verify_webhook(SECRET, request.body, ts, sig)  # verifies with the shared secret
    assert abs(int(ts) - time.time()) < 30
    event = request.json()
    assert (event["kind"], event["action"], event["incident_key"]) == ("certificate.failover", "trigger",
                                                                       "certificate.failover:a")
    with pytest.raises(senders.WebhookVerificationError, match="replay"):  # the same request, replayed later
        senders.verify_webhook(SECRET, request.body, ts, sig, now=int(ts) + 3600)
    with pytest.raises(senders.WebhookVerificationError, match="does not match"):
        senders.verify_webhook(SECRET, request.body.replace(b'"high"', b'"info"'), ts, sig)
    with pytest.raises(senders.WebhookVerificationError, match="does not match"):  # a moved timestamp
        senders.verify_webhook(SECRET, request.body, str(int(ts) + 1), sig)
    with pytest.raises(senders.WebhookVerificationError, match="does not match"):
        senders.verify_webhook("another-secret", request.body, ts, sig)
    with pytest.raises(senders.WebhookVerificationError, match="missing"):
        senders.verify_webhook(SECRET, request.body, ts, None)

    row = Notification.objects.get()
    assert (row.status, row.attempts, row.response_code) == ("sent", 1, 202) and row.sent_at is not None
    assert deliver(row.pk).status == "skipped", "a redelivered task sends nothing"
    assert len(receiver.posts()) == 1


def test_pagerduty_trigger_then_resolve_with_one_dedup_key(receiver: Recorder) -> None:
    channel("pagerduty", receiver.url("/v2/enqueue"), ROUTING_KEY, min_severity="high")
    notify("certificate.failover", Severity.HIGH, "Certificate shop is on a temporary certificate",
           dedup_key="certificate.failover:7:70", context={"certificate": "shop", "reason": "CA down"})
    notify("certificate.recovered", Severity.INFO, "Certificate shop recovered",  # below min_severity: resolves
           dedup_key="certificate.recovered:7:71", context={"certificate": "shop"})
    assert deliver_all() == ["sent", "sent"]
    trigger, resolve = (r.json() for r in receiver.posts())
    assert receiver.posts()[0].path == "/v2/enqueue"
    assert pagerduty_schema_errors(trigger) == [] and pagerduty_schema_errors(resolve) == []
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] == "certificate.failover:shop"
    assert trigger["routing_key"] == resolve["routing_key"] == ROUTING_KEY
    assert trigger["payload"]["severity"] == "error" and trigger["payload"]["source"] == "gateway-worker"
    assert trigger["payload"]["custom_details"]["reason"] == "CA down"
    assert "payload" not in resolve

    with connection.cursor() as cursor:  # the routing key is encrypted at rest
        cursor.execute("SELECT secret FROM integrations_notificationchannel")
        (stored,) = cursor.fetchone()
    assert ROUTING_KEY.encode() not in bytes(stored)


def test_the_schema_check_catches_a_bad_event() -> None:
    assert pagerduty_schema_errors({"routing_key": "k", "event_action": "resolve"}) == ["resolve needs a dedup_key"]
    bad = {"routing_key": "k", "event_action": "trigger", "payload": {"summary": "s", "source": "x",
                                                                       "severity": "high"}}
    assert pagerduty_schema_errors(bad) == ["payload.severity 'high' not one of "
                                            "['critical', 'error', 'info', 'warning']"]


def test_twenty_events_of_one_incident_page_once(receiver: Recorder) -> None:
    pd = channel("pagerduty", receiver.url(), ROUTING_KEY)
    for i in range(20):
        notify("security.incident", Severity.CRITICAL, f"Credential stuffing from 45.9.0.{i}",
               dedup_key=f"security_event:{i}", context={"incident": 42, "ip": f"45.9.0.{i}"})
    assert deliver_all().count("sent") == 1
    assert len(receiver.posts()) == 1, "one page for one incident"
    assert Notification.objects.filter(status=NotificationStatus.SUPPRESSED).count() == 19
    assert AlertThrottle.objects.get(channel=pd, incident_key="incident:42").suppressed == 19
    # the same event notified again (a redelivered producer) is not even a row
    assert notify("security.incident", Severity.CRITICAL, "again", dedup_key="security_event:3",
                  context={"incident": 42}) == 0
    # the incident resolved: goes through and closes the window; a new trigger pages again
    notify("security.incident.resolved", Severity.INFO, "over", dedup_key="incident-resolved:42",
           context={"incident": 42, "event_action": "resolve"})
    notify("security.incident", Severity.CRITICAL, "back", dedup_key="security_event:99", context={"incident": 42})
    assert deliver_all().count("sent") == 2
    assert [r.json()["event_action"] for r in receiver.posts()] == ["trigger", "resolve", "trigger"]
    assert len({r.json()["dedup_key"] for r in receiver.posts()}) == 1


def test_slack_payload_shape(receiver: Recorder) -> None:
    secret_url = receiver.url("/services/T000/B000/XXXXsecrettoken")
    channel("slack", "https://hooks.slack.invalid/ (url in secret)", secret_url)
    notify("certificate.failover", Severity.HIGH, "Certificate a is on a temporary certificate", "renewal failed",
           dedup_key="k1", context={"certificate": "a", "domains": ["a.example", "b.example"]})
    assert deliver_all() == ["sent"]
    (request,) = receiver.posts()
    assert request.path == "/services/T000/B000/XXXXsecrettoken"
    assert request.headers["Content-Type"] == "application/json"
    message = request.json()
    assert set(message) == {"text", "blocks"}
    assert message["text"] == ":rotating_light: [HIGH] Certificate a is on a temporary certificate"
    assert all(b["type"] in {"section", "context"} for b in message["blocks"])
    assert message["blocks"][0]["text"]["type"] == "mrkdwn"
    assert message["blocks"][1]["text"]["text"] == "renewal failed"
    assert {"type": "mrkdwn", "text": "*domains*\na.example, b.example"} in message["blocks"][2]["fields"]


def test_email_through_djangos_locmem_backend(settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    channel("email", "ops@example.test, oncall@example.test", options={"from": "gw@example.test"})
    notify("certificate.failover", Severity.HIGH, "Certificate a is on a temporary certificate", "renewal failed",
           dedup_key="k", context={"certificate": "a"})
    assert deliver_all() == ["sent"]
    (message,) = mail.outbox
    assert message.to == ["ops@example.test", "oncall@example.test"] and message.from_email == "gw@example.test"
    assert message.subject == "[HIGH] Certificate a is on a temporary certificate"
    assert "renewal failed" in message.body and "certificate: a" in message.body


class SmtpRecorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def test_email_through_a_local_smtp_server() -> None:
    handler = SmtpRecorder()
    with socket.socket() as probe:  # a free port (the controller's own start-up check cannot use port 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        channel("email", "ops@example.test", options={"smtp_host": "127.0.0.1", "smtp_port": port,
                                                      "from": "gw@example.test"})
        notify("certificate.recovered", Severity.INFO, "Certificate a recovered", dedup_key="k",
               context={"certificate": "a"})
        assert deliver_all() == ["sent"]
    finally:
        controller.stop()
    ((sender, recipients, content),) = handler.messages
    assert (sender, recipients) == ("gw@example.test", ["ops@example.test"])
    assert b"Subject: [INFO] Certificate a recovered" in content


def test_transient_failure_backs_off_then_sends_once(receiver: Recorder) -> None:
    receiver.answers = [503]
    channel("webhook", receiver.url(), SECRET)
    notify("certificate.failover", Severity.HIGH, "x", dedup_key="k", context={"certificate": "a"})
    row = Notification.objects.get()
    outcome = deliver(row.pk)
    assert outcome.status == "retry" and outcome.retry_in is not None and outcome.retry_in > 0
    row.refresh_from_db()
    assert (row.status, row.attempts, row.error) == ("pending", 1, "receiver answered HTTP 503")
    assert row.next_attempt_at is not None and row.next_attempt_at > timezone.now()
    assert deliver(row.pk).status == "skipped", "not due yet"
    assert due_notifications() == []
    Notification.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
    assert due_notifications() == [row.pk]
    assert deliver(row.pk).status == "sent"
    row.refresh_from_db()
    assert (row.status, row.attempts, row.error, row.response_code) == ("sent", 2, "", 202)
    assert len(receiver.posts()) == 2  # one refused, one taken


def test_permanent_failure_is_not_retried_and_frees_the_incident(receiver: Recorder) -> None:
    receiver.answers = [400]
    channel("webhook", receiver.url(), SECRET)
    notify("x.failed", Severity.HIGH, "x", dedup_key="k1", context={"incident": 1})
    notify("x.failed", Severity.HIGH, "y", dedup_key="k2", context={"incident": 1})
    assert deliver_all() == ["failed", "sent"], "a page that never went out does not hold the window"
    assert Notification.objects.get(dedupe_key="k1").error == "receiver refused with HTTP 400"


def test_unreachable_slack_url_and_secrets_stay_out_of_errors_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token_url = "http://127.0.0.1:9/services/T1/B1/S3CRETTOKEN"  # nothing listens on port 9
    channel("slack", "slack (url in secret)", token_url)
    channel("webhook", "http://127.0.0.1:9/hook", SECRET)
    notify("x.failed", Severity.HIGH, "x", dedup_key="k")
    assert deliver_all() == ["retry", "retry"]
    errors = " ".join(Notification.objects.values_list("error", flat=True))
    assert "cannot reach the receiver" in errors
    for text in (errors, caplog.text):
        assert "S3CRETTOKEN" not in text and SECRET not in text


def test_missing_secret_is_a_permanent_failure() -> None:
    channel("pagerduty", "https://events.pagerduty.invalid/v2/enqueue")
    notify("x.failed", Severity.HIGH, "x", dedup_key="k")
    assert deliver_all() == ["failed"]
    assert Notification.objects.get().error == "PagerDuty channel has no routing key; set one in admin"


def test_routing_by_kind_glob_and_severity() -> None:
    certs = channel("webhook", "http://127.0.0.1:9/a", SECRET, event_kinds=["certificate.*"], min_severity="high")
    everything = channel("webhook", "http://127.0.0.1:9/b", SECRET, min_severity="info")
    assert notify("certificate.expiring", Severity.MEDIUM, "x", dedup_key="1") == 1  # below certs' threshold
    assert notify("certificate.failover", Severity.CRITICAL, "x", dedup_key="2") == 2
    assert notify("waf.rule.nacked", Severity.CRITICAL, "x", dedup_key="3") == 1  # not a certificate kind
    assert notify("certificate.recovered", Severity.INFO, "x", dedup_key="4") == 2  # a resolve always passes
    assert sorted(Notification.objects.filter(channel=certs).values_list("dedupe_key", flat=True)) == ["2", "4"]
    assert Notification.objects.filter(channel=everything).count() == 4


def test_a_send_abandoned_by_a_lost_worker_is_failed_not_resent(receiver: Recorder, settings) -> None:
    channel("webhook", receiver.url(), SECRET)
    notify("x.failed", Severity.HIGH, "x", dedup_key="k")
    row = Notification.objects.get()
    Notification.objects.filter(pk=row.pk).update(status="sending", claimed_at=timezone.now() - dt.timedelta(hours=1))
    assert deliver(row.pk).status == "skipped"
    assert fail_abandoned_sends() == 1
    row.refresh_from_db()
    assert row.status == "failed" and "outcome unknown" in row.error
    assert receiver.posts() == []


def test_event_document_is_json_with_the_detail(receiver: Recorder) -> None:
    channel("webhook", receiver.url(), SECRET)
    notify("certificate.failover", Severity.HIGH, "t", "body", dedup_key="k",
           context={"certificate": "a", "domains": ["a.example"]})
    deliver_all()
    event = json.loads(receiver.posts()[0].body)
    assert event["detail"] == {"text": "body", "certificate": "a", "domains": ["a.example"]}
    assert receiver.posts()[0].headers[senders.DELIVERY_HEADER] == str(Notification.objects.get().pk)


def test_gives_up_after_the_last_attempt(receiver: Recorder, settings) -> None:
    settings.NOTIFY_MAX_ATTEMPTS = 2
    receiver.answers = [503, 502]
    channel("webhook", receiver.url(), SECRET)
    notify("x.failed", Severity.HIGH, "x", dedup_key="k")
    row = Notification.objects.get()
    assert deliver(row.pk).status == "retry"
    Notification.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
    assert deliver(row.pk).status == "failed"
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("failed", 2)
    assert row.error == "gave up after 2 attempts: receiver answered HTTP 502"
    assert due_notifications() == []
