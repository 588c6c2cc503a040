"""Sentry: on only when SENTRY_DSN is set; nothing secret leaves the process."""

from __future__ import annotations

from typing import Any

from worker_project.redaction import redact


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """before_send: redact keys, tokens and PEM blocks anywhere in the event (messages, frames' vars, extra)."""
    return redact(event)


def sentry_options(dsn: str, *, environment: str | None, traces_sample_rate: float) -> dict[str, Any]:
    """The client options, apart so a test can build a real client from exactly these."""
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    return {
        "dsn": dsn,
        "environment": environment,
        "integrations": [DjangoIntegration(), CeleryIntegration(monitor_beat_tasks=True)],
        "traces_sample_rate": traces_sample_rate,
        "before_send": scrub_event,
        "before_send_transaction": scrub_event,
        # Breadcrumbs carry log messages: scrub them as they are recorded, not only when an event leaves.
        "before_breadcrumb": lambda crumb, hint: redact(crumb),
    }


def init_sentry(dsn: str, *, environment: str | None, traces_sample_rate: float) -> bool:
    if not dsn:
        return False
    import sentry_sdk

    sentry_sdk.init(**sentry_options(dsn, environment=environment, traces_sample_rate=traces_sample_rate))
    return True
