"""Thin Celery tasks on the ``config`` queue: take ids, call waf_config.services. Idempotent (acks late)."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

logger = logging.getLogger(__name__)

QUEUE = "config"  # routed by settings.CELERY_TASK_ROUTES ("waf_config.*")
TRANSIENT = (OperationalError, InterfaceError)


@shared_task(name="waf_config.validate_version", acks_late=True, autoretry_for=TRANSIENT, max_retries=3,
             retry_backoff=5, retry_jitter=True, time_limit=300, soft_time_limit=280)
def validate_version(version_id: int) -> dict[str, Any]:
    from waf_config.models import RuleSetVersion
    from waf_config.services.versions import validate_version as validate

    version = RuleSetVersion.objects.select_related("rule_set").filter(pk=version_id).first()
    if version is None:
        logger.warning("version %s is gone", version_id)
        return {"outcome": "missing"}
    report = validate(version)  # a second run finds the state moved on and records nothing new
    return {"ok": report.ok, "errors": len(report.errors)}


@shared_task(name="waf_config.run_replay", acks_late=True, autoretry_for=TRANSIENT, max_retries=3,
             retry_backoff=5, retry_jitter=True, time_limit=3600, soft_time_limit=3500)
def run_replay(run_id: int) -> dict[str, Any]:
    from waf_config.models import ReplayRun
    from waf_config.services.versions import execute_replay

    if not ReplayRun.objects.filter(pk=run_id).exists():
        return {"outcome": "missing"}
    run = execute_replay(run_id)  # a redelivery returns a finished run as it is, or starts a dead one over
    return {"status": run.status, "requests": run.requests_replayed, "error": run.error[:500]}


@shared_task(name="waf_config.run_deployment", acks_late=True, autoretry_for=TRANSIENT, max_retries=3,
             retry_backoff=5, retry_jitter=True, time_limit=3600, soft_time_limit=3500)
def run_deployment(deployment_id: int) -> dict[str, Any]:
    from waf_config.models import Deployment
    from waf_config.services.deployment import run_deployment as run

    if not Deployment.objects.filter(pk=deployment_id).exists():
        return {"outcome": "missing"}
    deployment = run(deployment_id)  # resumes from the stored state after a redelivery
    return {"state": deployment.state, "outcome": deployment.outcome[:500]}


@shared_task(name="waf_config.withdraw_expired_rules", acks_late=True, autoretry_for=TRANSIENT, max_retries=3,
             retry_backoff=2, time_limit=120, soft_time_limit=110)
def withdraw_expired_rules() -> dict[str, int]:
    from waf_config.services.emergency import withdraw_expired_rules as withdraw

    return {"withdrawn": withdraw()}
