"""The HTTP log door, included by the project's URLconf under ``logs/`` (``include("logpipeline.urls")``)."""

from __future__ import annotations

from django.urls import path

from logpipeline import http as log_intake

urlpatterns = [
    path("ingest", log_intake.intake, name="log-intake"),  # Vector / Fluent Bit HTTP sinks (docs/logs.md)
]
