"""Prometheus metrics for the web process: request counters here (summed over gunicorn's workers, see
gunicorn_conf), app gauges read on scrape.

Each app adds a *reader* (``add_reader``): a plain function that reads one store and returns its metric
families, or raises. One collector runs them all on scrape: a reader that raises costs its own families and
shows as ``gw_metrics_collector_up{collector=...,store=...} 0`` with one warning line, and the scrape still
answers. Readers are cheap: one aggregate query or one Redis round trip each.
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

# kombu's Redis transport keeps one list per priority step; the plain name is priority 0.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


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


def read_job_runs() -> list[Metric]:
    """Task runs by task and state: one GROUP BY over the job history (every worker, across restarts)."""
    from django.db.models import Count

    from audit.models import JobRun

    runs = GaugeMetricFamily("gw_task_runs", "Task runs kept in the job history, by task and state",
                             labels=["task", "state"])
    for task_name, state, n in JobRun.objects.order_by().values_list("task_name", "state").annotate(n=Count("id")):
        runs.add_metric([task_name, state], n)
    return [runs]


def read_queues() -> list[Metric]:
    """Messages waiting per Celery queue and the age of beat's last heartbeat: one Redis pipeline."""
    import redis
    from django.conf import settings

    from audit.heartbeat import HEARTBEAT_KEY
    from worker_project.celery import QUEUES

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        pipe = client.pipeline(transaction=False)
        for queue in QUEUES:
            for suffix in _PRIORITY_SUFFIXES:
                pipe.llen(queue + suffix)
        pipe.get(HEARTBEAT_KEY)
        values = pipe.execute()
    finally:
        client.close()
    depth = GaugeMetricFamily("gw_queue_depth", "Messages waiting in a Celery queue", labels=["queue"])
    per_queue = len(_PRIORITY_SUFFIXES)
    for i, queue in enumerate(QUEUES):
        depth.add_metric([queue], sum(values[i * per_queue:(i + 1) * per_queue]))
    age = GaugeMetricFamily("gw_beat_heartbeat_age_seconds",
                            "Seconds since the beat heartbeat job last ran (+Inf: never, or not for a day)")
    stamp = values[-1]
    age.add_metric([], float("inf") if stamp is None else max(0.0, time.time() - float(stamp)))
    return [depth, age]


add_reader("job_history", "database", read_job_runs)
add_reader("queues", "redis", read_queues)

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
