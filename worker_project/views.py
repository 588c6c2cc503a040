"""Process health, readiness and Prometheus metrics. No business logic here."""

from __future__ import annotations

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
