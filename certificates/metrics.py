"""/metrics for certificates, read from the database on scrape in one query: seconds to expiry of what each
certificate serves, certificates per state, and renewal attempts (orders) by result."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from django.db import connection
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# One round trip: per-certificate rows and the order counts, told apart by the first column.
_SQL = """
SELECT 'cert' AS kind, c.name, c.state, EXTRACT(EPOCH FROM c.not_after)::float8, COALESCE(v.source, ''), 0
  FROM certificates_certificate c LEFT JOIN certificates_certificateversion v ON v.id = c.current_version_id
UNION ALL
SELECT 'order', '', o.status, NULL, '', COUNT(*) FROM certificates_acmeorder o GROUP BY o.status
"""


class CertificateCollector(Collector):
    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("gw_certificate_expiry_seconds", "", labels=["certificate", "temporary"])
        yield GaugeMetricFamily("gw_certificates", "", labels=["state"])
        yield CounterMetricFamily("gw_certificate_renewals", "", labels=["result"])

    def collect(self) -> Iterator[Metric]:
        expiry = GaugeMetricFamily("gw_certificate_expiry_seconds",
                                   "Seconds until the served version of each certificate expires",
                                   labels=["certificate", "temporary"])
        states = GaugeMetricFamily("gw_certificates", "Certificates by state", labels=["state"])
        renewals = CounterMetricFamily("gw_certificate_renewals",
                                       "Renewal attempts (ACME orders) by result: valid, failed, abandoned, live",
                                       labels=["result"])
        try:
            with connection.cursor() as cur:
                cur.execute(_SQL)
                rows = cur.fetchall()
        except Exception:  # noqa: BLE001 - a scrape must answer even with the database down
            logger.warning("metrics: certificates unavailable", exc_info=True)
            return
        now = time.time()
        per_state: dict[str, int] = {}
        for kind, name, state, not_after, source, count in rows:
            if kind == "cert":
                per_state[state] = per_state.get(state, 0) + 1
                if not_after is not None:
                    expiry.add_metric([name, "true" if source == "temporary" else "false"], not_after - now)
            else:
                renewals.add_metric([state], float(count))
        for state, n in sorted(per_state.items()):
            states.add_metric([state], n)
        yield expiry
        yield states
        yield renewals


_registered = False


def register_collector() -> None:
    global _registered
    if not _registered:
        REGISTRY.register(CertificateCollector())
        _registered = True
