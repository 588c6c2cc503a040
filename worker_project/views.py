"""Process health, readiness and Prometheus metrics. No business logic here."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from worker_project import metrics as metrics_mod
from worker_project.readiness import check_readiness


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def ready(request: HttpRequest) -> JsonResponse:
    problems = check_readiness()
    if problems:
        return JsonResponse({"status": "unavailable", "problems": problems}, status=503)
    return JsonResponse({"status": "ready"})


def metrics(request: HttpRequest) -> HttpResponse:
    body, content_type = metrics_mod.render()
    return HttpResponse(body, content_type=content_type)


PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {"/health": health, "/ready": ready, "/metrics": metrics}


class ProbeMiddleware:
    """Answer /health, /ready and /metrics before host validation: orchestrators and Prometheus reach a pod by
    its IP, which is never in ALLOWED_HOSTS. Safe because these views build no URLs from the Host header."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = PROBES.get(request.path_info)
        if view is not None and request.method in ("GET", "HEAD"):
            return view(request)
        return self.get_response(request)
