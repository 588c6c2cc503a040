"""Sentry: on only when SENTRY_DSN is set; nothing secret leaves the process."""

from __future__ import annotations

from typing import Any

from worker_project.redaction import redact


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """before_send: redact keys, tokens and PEM blocks anywhere in the event (messages, frames' vars, extra)."""
    return redact(event)


def init_sentry(dsn: str, *, environment: str | None, traces_sample_rate: float) -> bool:
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[DjangoIntegration(), CeleryIntegration(monitor_beat_tasks=True)],
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,
        before_send=scrub_event,
        before_send_transaction=scrub_event,
    )
    return True
