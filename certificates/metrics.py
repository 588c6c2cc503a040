"""/metrics for certificates, read from the database on scrape through the ORM (so SQLite and PostgreSQL
alike): seconds to expiry of what each certificate serves, certificates per state, and renewal attempts
(orders) by result. Two queries, whatever the number of certificates."""

from __future__ import annotations

import time

from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


def read_certificate_metrics() -> list[Metric]:
    from certificates.models import AcmeOrder, Certificate, VersionSource

    expiry = GaugeMetricFamily("gw_certificate_expiry_seconds",
                               "Seconds until the served version of each certificate expires",
                               labels=["certificate", "temporary"])
    states = GaugeMetricFamily("gw_certificates", "Certificates by state", labels=["state"])
    renewals = CounterMetricFamily("gw_certificate_renewals",
                                   "Renewal attempts (ACME orders) by result: valid, failed, abandoned, live",
                                   labels=["result"])
    now = time.time()
    per_state: dict[str, int] = {}
    rows = Certificate.objects.order_by().values_list("name", "state", "not_after", "current_version__source")
    for name, state, not_after, source in rows:
        per_state[state] = per_state.get(state, 0) + 1
        if not_after is not None:
            temporary = "true" if source == VersionSource.TEMPORARY else "false"
            expiry.add_metric([name, temporary], not_after.timestamp() - now)
    for state, n in sorted(per_state.items()):
        states.add_metric([state], n)
    for status, n in AcmeOrder.objects.order_by().values_list("status").annotate(n=Count("id")):
        renewals.add_metric([status], float(n))
    return [expiry, states, renewals]


def register_reader() -> None:
    from worker_project.metrics import add_reader

    add_reader("certificates", "database", read_certificate_metrics)
