"""The beat scan selects only due certificates with the partial index, in one query, and enqueues after
commit; the retry job picks failing certificates whose backoff passed."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from certificates.models import Certificate
from certificates.services import scan
from certificates.services.policy import due_certificates
from certificates.tasks import scan_expiring_certificates

pytestmark = pytest.mark.django_db


def _cert(name: str, **fields) -> Certificate:  # type: ignore[no-untyped-def]
    return Certificate.objects.create(name=name, common_name=f"{name}.example.test",
                                      domains=[f"{name}.example.test"], **fields)


@pytest.fixture
def rows() -> dict[str, Certificate]:
    now = timezone.now()
    hour = dt.timedelta(hours=1)
    return {
        "due": _cert("due", renew_after=now - hour),
        "due-backoff-passed": _cert("due-backoff-passed", renew_after=now - hour, next_attempt_at=now - hour,
                                    consecutive_failures=2),
        "backing-off": _cert("backing-off", renew_after=now - hour, next_attempt_at=now + hour,
                             consecutive_failures=1),
        "not-due": _cert("not-due", renew_after=now + hour),
        "manual": _cert("manual", renew_after=now - hour, auto_renew=False),
        "never": _cert("never", renew_after=None),
    }


def test_due_selection(rows) -> None:  # type: ignore[no-untyped-def]
    got = set(due_certificates(timezone.now()).values_list("name", flat=True))
    assert got == {"due", "due-backoff-passed"}


def test_scan_is_one_query_per_selection_and_enqueues_after_commit(rows, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    renewals: list[int] = []
    failovers: list[int] = []
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=False) as hooks:
        counts = scan.scan_expiring_certificates(renewals.append, failovers.append)
    assert len(queries) == 2, [q["sql"] for q in queries]  # due ids, failover ids: nothing per row
    assert counts == {"due": 2, "failover": 0}
    assert renewals == [], "nothing is enqueued before the transaction commits"
    for hook in hooks:
        hook()
    assert sorted(renewals) == sorted([rows["due"].pk, rows["due-backoff-passed"].pk])


def test_retry_job_takes_only_failing_certificates_past_their_backoff(rows, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    retried: list[int] = []
    with django_capture_on_commit_callbacks(execute=True):
        assert scan.retry_failed_renewals(retried.append) == {"retried": 1}
    assert retried == [rows["due-backoff-passed"].pk]


def test_the_due_query_uses_the_partial_index(rows) -> None:  # type: ignore[no-untyped-def]
    sql, params = due_certificates(timezone.now()).values_list("id", flat=True).query.sql_with_params()
    with connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")  # a 6-row table would be seq-scanned otherwise
        cur.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert "cert_due_idx" in plan, plan


def test_the_task_returns_counts(rows, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=False):  # do not hit the broker from this test
        assert scan_expiring_certificates.run() == {"due": 2, "failover": 0}
