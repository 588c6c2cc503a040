"""integrations.services.notify: the one writer of Notification rows (pending, per channel, deduplicated)."""

from __future__ import annotations

import pytest
from django.db import transaction

from integrations.models import Notification, NotificationChannel, NotificationStatus
from integrations.services import Severity, notify

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops() -> NotificationChannel:
    NotificationChannel.objects.create(name="off", kind="webhook", target="https://x.invalid", enabled=False)
    NotificationChannel.objects.create(name="waf", kind="webhook", target="https://y.invalid",
                                       event_kinds=["waf.rule.nacked"])
    return NotificationChannel.objects.create(name="ops", kind="slack", target="https://hooks.invalid/x")


def test_one_pending_row_per_channel_that_takes_the_kind(ops: NotificationChannel) -> None:
    written = notify("certificate.failover", Severity.HIGH, "Certificate a is on a temporary certificate",
                     "renewal failed", dedup_key="certificate.failover:1:2", context={"certificate": "a"})
    assert written == 1
    row = Notification.objects.get()
    assert (row.channel, row.event_kind, row.severity, row.status) == (ops, "certificate.failover", "high",
                                                                       NotificationStatus.PENDING)
    assert row.dedupe_key == "certificate.failover:1:2" and row.title.startswith("Certificate a")
    assert row.body == {"text": "renewal failed", "certificate": "a"}


def test_the_same_dedup_key_alerts_a_channel_once(ops: NotificationChannel) -> None:
    for _ in range(3):  # a redelivered task calling again
        notify("certificate.recovered", Severity.INFO, "recovered", dedup_key="certificate.recovered:1:3")
    assert Notification.objects.filter(channel=ops).count() == 1
    late = NotificationChannel.objects.create(name="late", kind="webhook", target="https://z.invalid")
    assert notify("certificate.recovered", Severity.INFO, "recovered", dedup_key="certificate.recovered:1:3") == 1
    assert Notification.objects.filter(channel=late).count() == 1, "a channel added later still gets it"
    assert notify("certificate.recovered", Severity.INFO, "recovered", dedup_key="certificate.recovered:1:4") == 2


def test_a_rolled_back_change_leaves_no_alert(ops: NotificationChannel) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        notify("certificate.failover", Severity.HIGH, "x", dedup_key="k")
        raise RuntimeError("the change failed")
    assert not Notification.objects.exists()


def test_unknown_severity_is_refused(ops: NotificationChannel) -> None:
    with pytest.raises(ValueError):
        notify("certificate.failover", "loud", "x", dedup_key="k")  # type: ignore[arg-type]
    assert not Notification.objects.exists()
