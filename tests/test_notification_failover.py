"""A certificate failover and its recovery, through the certificates app's own service path, delivered by a REAL
Celery worker on the integrations queue (Redis broker, PostgreSQL) to local receivers that record requests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker

from certificates.services.failover import fail_over
from gateways.models import GatewayGroup
from integrations import senders
from integrations.models import Notification, NotificationChannel
from integrations.tasks import deliver_notification
from tests.certificates_support import install_expiring_version, make_certificate, unique
from tests.integrations_support import Recorder, pagerduty_schema_errors
from tests.push_support import wait_until
from worker_project import queues
from worker_project.celery import app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SECRET = "whsec-failover-5b1d"
ROUTING_KEY = "PDROUTINGKEYfailover0123456789ab"


@pytest.fixture
def integrations_worker(transactional_db: Any) -> Iterator[Any]:  # the worker thread must see committed rows
    with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False, queues=[queues.INTEGRATIONS],
                      shutdown_timeout=20) as worker:
        yield worker


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    return wait_until(predicate, timeout=timeout, interval=0.1)


def test_failover_pages_once_signed_and_recovery_resolves_the_same_key(integrations_worker: Any,
                                                                        receiver: Recorder) -> None:
    GatewayGroup.objects.get_or_create(name="default")
    NotificationChannel.objects.create(name=unique("hook"), kind="webhook", target=receiver.url("/hook"),
                                       secret=SECRET)
    NotificationChannel.objects.create(name=unique("pd"), kind="pagerduty", target=receiver.url("/v2/enqueue"),
                                       secret=ROUTING_KEY, min_severity="high")
    cert = make_certificate([f"{unique('nf')}.example.test"])
    install_expiring_version(cert, days_left=5)

    assert fail_over(cert, "cannot reach the ACME server") is not None  # the failover service path
    hooks = lambda: [r for r in receiver.posts() if r.path == "/hook"]  # noqa: E731
    pages = lambda: [r.json() for r in receiver.posts() if r.path == "/v2/enqueue"]  # noqa: E731
    wait_for(lambda: len(hooks()) == 1 and len(pages()) == 1)

    (hook,) = hooks()
    senders.verify_webhook(SECRET, hook.body, hook.headers[senders.TIMESTAMP_HEADER],
                           hook.headers[senders.SIGNATURE_HEADER])
    assert hook.json()["kind"] == "certificate.failover" and hook.json()["detail"]["certificate"] == cert.name

    # a redelivered task for the same notification sends nothing
    failover_row = Notification.objects.get(event_kind="certificate.failover", channel__kind="webhook")
    deliver_notification.delay(failover_row.pk)
    time.sleep(1.5)
    assert len(hooks()) == 1, "the failover reached the webhook once"

    install_expiring_version(cert, days_left=80)  # a real certificate lands: recovery
    wait_for(lambda: len(pages()) == 2 and len(hooks()) == 2)
    trigger, resolve = pages()
    assert [pagerduty_schema_errors(e) for e in (trigger, resolve)] == [[], []]
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] == f"certificate.failover:{cert.name}"
    assert [h.json()["kind"] for h in hooks()] == ["certificate.failover", "certificate.recovered"]
    # the receiver records a POST before the worker has written the row's outcome: wait for it, do not race it
    wait_for(lambda: set(Notification.objects.values_list("status", flat=True)) == {"sent"})
