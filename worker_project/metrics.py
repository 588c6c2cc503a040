"""Prometheus metrics for the web process: request counters here, app gauges collected on scrape."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

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


def render() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
