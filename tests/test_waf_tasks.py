"""The thin tasks through a REAL Celery worker on the config queue (real Redis broker, PostgreSQL)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from audit import approvals
from gateways.models import GatewayGroup
from gateways.services import create_group
from tests.waf_support import block_rule, corpus, people, rules_file, waf_rule_set
from waf_config.models import Deployment, EmergencyRule, RuleSetVersion
from waf_config.services.deployment import run_deployment, start_deployment
from waf_config.services.versions import create_version, replay_version, submit_for_approval
from waf_config.tasks import withdraw_expired_rules
from worker_project.celery import app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def config_worker(transactional_db):  # noqa: ARG001 - the worker thread must see committed rows
    with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False, queues=["config"],
                      shutdown_timeout=20) as w:
        yield w


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_deployment_task_fails_safe_without_a_canary_gateway(config_worker, settings) -> None:
    settings.WAF_ACK_TIMEOUT_SECONDS = 2
    p = people()
    if not GatewayGroup.objects.filter(name="canary").exists():
        create_group("canary", actor="tests")
    version = create_version(waf_rule_set(), rules_file(block_rule("wp", "uri", "contains", "wp-login")), p.alice)
    replay_version(version, corpus())
    approvals.approve(submit_for_approval(version, p.alice), p.bob, "ok")
    deployment = start_deployment(RuleSetVersion.objects.get(pk=version.pk), p.carol, soak_seconds=0)  # enqueued
    done = wait_for(lambda: Deployment.objects.filter(pk=deployment.pk, finished_at__isnull=False).first())
    assert done.state == "rolled_back" and "no Gateway of canary group canary is connected" in done.outcome
    assert run_deployment(deployment.pk).state == "rolled_back"  # a redelivery changes nothing


def test_withdraw_task(config_worker) -> None:
    people()
    rule = EmergencyRule.objects.create(pattern="10.0.0.1", reason="r", created_by="tests",
                                        expires_at=timezone.now() - timedelta(seconds=1))
    withdraw_expired_rules.delay()
    wait_for(lambda: EmergencyRule.objects.filter(pk=rule.pk, withdrawn_at__isnull=False).exists())
