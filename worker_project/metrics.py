"""Prometheus metrics for the web process: request counters here (summed over gunicorn's workers, see
gunicorn_conf), app gauges read on scrape.

Each app adds a *reader* (``add_reader``): a plain function that reads one store and returns its metric
families, or raises. One collector runs them all on scrape: a reader that raises costs its own families and
shows as ``gw_metrics_collector_up{collector=...,store=...} 0`` with one warning line, and the scrape still
answers. Readers are cheap: one aggregate query or one Redis round trip each. This module imports no app: the
job-history, queue and heartbeat readers are audit's (``audit.metrics``), the certificate ones certificates'.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

HTTP_REQUESTS = Counter("gw_http_requests_total", "HTTP requests served", ["method", "status"])
HTTP_LATENCY = Histogram("gw_http_request_seconds", "HTTP request latency", ["method"])

class RequestMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        response = self.get_response(request)
        HTTP_LATENCY.labels(request.method).observe(time.perf_counter() - start)
        HTTP_REQUESTS.labels(request.method, str(response.status_code)).inc()
        return response


@dataclass(frozen=True)
class Reader:
    collector: str  # label of gw_metrics_collector_up, e.g. "certificates"
    store: str  # what it reads: "database" or "redis"
    read: Callable[[], Iterable[Metric]]  # raises when the store cannot answer


_readers: dict[str, Reader] = {}


def add_reader(collector: str, store: str, read: Callable[[], Iterable[Metric]]) -> None:
    """Read ``read()``'s families on every scrape (apps call this from ``AppConfig.ready``)."""
    _readers[collector] = Reader(collector, store, read)


def _up_family() -> GaugeMetricFamily:
    return GaugeMetricFamily("gw_metrics_collector_up", "1 when the collector could read its store",
                             labels=["collector", "store"])


class ScrapeCollector(Collector):
    """Runs every reader; a failing one is reported, never raised."""

    def describe(self) -> Iterator[Metric]:
        # Names only: without this the registry would run collect() (queries) at registration.
        yield _up_family()

    def collect(self) -> Iterator[Metric]:
        up = _up_family()
        for reader in list(_readers.values()):
            try:
                families = list(reader.read())
            except Exception as exc:  # noqa: BLE001 - a scrape must answer whatever one store does
                logger.warning("metrics: %s unavailable (%s): %s: %s", reader.collector, reader.store,
                               exc.__class__.__name__, str(exc).splitlines()[0] if str(exc) else "")
                up.add_metric([reader.collector, reader.store], 0)
                continue
            up.add_metric([reader.collector, reader.store], 1)
            yield from families
        yield up


SCRAPE_COLLECTOR = ScrapeCollector()
_registered = False


def register_collectors() -> None:
    global _registered
    if not _registered:
        REGISTRY.register(SCRAPE_COLLECTOR)
        _registered = True


def scrape_registry() -> CollectorRegistry:
    """The process's own registry; under gunicorn (PROMETHEUS_MULTIPROC_DIR, see gunicorn_conf) the sum of
    every worker's files instead, plus the readers, which answer the same from any worker."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        register_collectors()
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(SCRAPE_COLLECTOR)
    return registry


def render() -> tuple[bytes, str]:
    return generate_latest(scrape_registry()), CONTENT_TYPE_LATEST
