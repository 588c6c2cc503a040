"""Prometheus metrics for the web process: request counters here, app gauges collected on scrape.

Collectors are cheap: one aggregate query over the job history and one Redis round trip (queue lengths and
the beat heartbeat). A collector whose store is down reports ``gw_metrics_collector_up 0`` instead of
failing the scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
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


def _up_family() -> GaugeMetricFamily:
    return GaugeMetricFamily("gw_metrics_collector_up", "1 when the collector could read its store",
                             labels=["store"])


class AppCollector(Collector):
    """Task runs by task and state (one GROUP BY over the job history, from every worker, across restarts),
    messages waiting per Celery queue and the age of beat's last heartbeat (one Redis pipeline)."""

    def describe(self) -> Iterator[Metric]:
        # Names only: without this the registry would run collect() (a query) at registration.
        yield GaugeMetricFamily("gw_task_runs", "", labels=["task", "state"])
        yield GaugeMetricFamily("gw_queue_depth", "", labels=["queue"])
        yield GaugeMetricFamily("gw_beat_heartbeat_age_seconds", "")
        yield _up_family()

    def collect(self) -> Iterator[Metric]:
        up = _up_family()
        yield from self._job_runs(up)
        yield from self._redis(up)
        yield up

    def _job_runs(self, up: GaugeMetricFamily) -> Iterator[Metric]:
        from django.db.models import Count

        from audit.models import JobRun

        runs = GaugeMetricFamily("gw_task_runs", "Task runs kept in the job history, by task and state",
                                 labels=["task", "state"])
        try:
            rows = JobRun.objects.order_by().values_list("task_name", "state").annotate(n=Count("id"))
            for task_name, state, n in rows:
                runs.add_metric([task_name, state], n)
        except Exception:  # noqa: BLE001 - a scrape must answer even with the database down
            logger.warning("metrics: job history unavailable", exc_info=True)
            up.add_metric(["database"], 0)
            return
        up.add_metric(["database"], 1)
        yield runs

    def _redis(self, up: GaugeMetricFamily) -> Iterator[Metric]:
        import redis
        from django.conf import settings

        from audit.heartbeat import HEARTBEAT_KEY
        from worker_project.celery import QUEUES

        depth = GaugeMetricFamily("gw_queue_depth", "Messages waiting in a Celery queue", labels=["queue"])
        age = GaugeMetricFamily("gw_beat_heartbeat_age_seconds",
                                "Seconds since the beat heartbeat job last ran (+Inf: never, or not for a day)")
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        try:
            pipe = client.pipeline(transaction=False)
            for queue in QUEUES:
                for suffix in _PRIORITY_SUFFIXES:
                    pipe.llen(queue + suffix)
            pipe.get(HEARTBEAT_KEY)
            values = pipe.execute()
        except redis.RedisError:
            logger.warning("metrics: redis unavailable", exc_info=True)
            up.add_metric(["redis"], 0)
            return
        finally:
            client.close()
        per_queue = len(_PRIORITY_SUFFIXES)
        for i, queue in enumerate(QUEUES):
            depth.add_metric([queue], sum(values[i * per_queue:(i + 1) * per_queue]))
        stamp = values[-1]
        age.add_metric([], float("inf") if stamp is None else max(0.0, time.time() - float(stamp)))
        up.add_metric(["redis"], 1)
        yield depth
        yield age


_registered = False


def register_collectors() -> None:
    global _registered
    if not _registered:
        REGISTRY.register(AppCollector())
        _registered = True


def render() -> tuple[bytes, str]:
    register_collectors()
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
