"""The thin tasks through a REAL Celery worker on the config queue (real Redis broker, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from audit import approvals
from gateways.models import GatewayGroup
from gateways.services import create_group
from tests.push_support import wait_until
from tests.waf_support import block_rule, corpus, people, rules_file, waf_rule_set
from waf_config.models import Deployment, EmergencyRule, ReplayRun, ReplaySet, RuleSetVersion
from waf_config.services.deployment import run_deployment, start_deployment
from waf_config.services.versions import (
    create_version,
    execute_replay,
    replay_version,
    request_replay,
    submit_for_approval,
)
from waf_config.tasks import withdraw_expired_rules
from worker_project.celery import app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def config_worker(transactional_db):  # noqa: ARG001 - the worker thread must see committed rows
    with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False, queues=["config"],
                      shutdown_timeout=20) as w:
        yield w


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    return wait_until(predicate, timeout=timeout, interval=0.1)


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


def big_corpus(name: str, n: int) -> ReplaySet:
    rows = [{"method": "GET", "uri": "/wp-login.php" if i % 3 == 0 else f"/shop/{i}", "client_ip": f"10.0.{i // 250}."
             f"{i % 250}", "label": "attack" if i % 3 == 0 else "benign", "timestamp": i} for i in range(n)]
    return corpus(name, rows)


def test_a_large_replay_is_a_task_with_progress_and_a_redelivery_adds_no_report(config_worker, settings,
                                                                                 client) -> None:
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from audit.models import AuditEvent
    from waf_config.tasks import run_replay

    settings.WAF_REPLAY_INLINE_MAX_REQUESTS = 1000
    p = people()
    big = big_corpus("big", 3000)
    version = create_version(waf_rule_set(), rules_file(block_rule("wp", "uri", "contains", "wp-login")), p.alice)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=p.alice).key}")
    res = api.post(f"/api/waf/versions/{version.pk}/replay/", {"replay_set": "big"}, format="json")
    assert res.status_code == 202, res.json()
    assert (res.json()["status"], res.json()["requests_total"]) == ("queued", 3000)
    run_id = res.json()["id"]
    done = wait_for(lambda: (r := api.get(f"/api/waf/replay-runs/{run_id}/").json())["status"] == "done" and r)
    assert (done["requests_replayed"], done["newly_blocked"], done["progress"]) == (3000, 1000, "done: 3000 requests")
    assert done["report"]["attacks_stopped_new"] == 1000 and done["report"]["benign_stopped_new"] == 0
    assert api.get(f"/api/waf/versions/{version.pk}/replay-report/").json()["id"] == run_id
    assert RuleSetVersion.objects.get(pk=version.pk).state == "replayed"
    assert AuditEvent.objects.filter(action="waf.replay_queued", object_id=str(version.pk)).count() == 1

    # the same message delivered again (acks late): the finished run is returned as it is, no second report
    assert run_replay(run_id) == {"status": "done", "requests": 3000, "error": ""}
    assert ReplayRun.objects.filter(version=version).count() == 1
    assert AuditEvent.objects.filter(action="waf.version_replayed", object_id=str(version.pk)).count() == 1
    # a worker that died mid-run left it "running": the redelivery starts it over on the same row
    ReplayRun.objects.filter(pk=run_id).update(status="running", requests_replayed=1500, report={})
    assert run_replay(run_id)["status"] == "done"
    again = ReplayRun.objects.get(version=version)
    assert (again.pk, again.requests_replayed, again.report["requests"]) == (run_id, 3000, 3000)

    # admin: the same action queues a large set and the version's page shows the run's progress
    p.alice.is_staff = True
    p.alice.save()
    client.force_login(p.alice)
    v2 = create_version(version.rule_set, rules_file(block_rule("shop", "uri", "starts_with", "/shop")), p.alice)
    queued = request_replay(v2, big, p.alice, enqueue=False)  # held back from the worker to see it queued
    assert request_replay(v2, big, p.alice, enqueue=False).pk == queued.pk  # asking twice: one run
    ReplayRun.objects.filter(pk=queued.pk).update(status="running", requests_replayed=1500)
    page = client.get(f"/admin/waf_config/rulesetversion/{v2.pk}/change/").content.decode()
    assert f"replay run {queued.pk} on big: <b>running: 1500 of 3000 (50%)</b>" in page


def test_replay_progress_is_written_while_it_runs(settings) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    p = people()
    big = big_corpus("big", 2500)
    version = create_version(waf_rule_set(), rules_file(block_rule("wp", "uri", "contains", "wp-login")), p.alice)
    run = request_replay(version, big, p.alice, enqueue=False)
    with CaptureQueriesContext(connection) as queries:
        run = execute_replay(run.pk, progress_every=1000)
    progress = [q["sql"] for q in queries.captured_queries
                if q["sql"].startswith("UPDATE") and '"requests_replayed" = ' in q["sql"] and "report" not in q["sql"]]
    assert [s.split('"requests_replayed" = ')[1].split(" ")[0].rstrip(",") for s in progress] == ["0", "1000", "2000"]
    assert (run.status, run.requests_replayed, run.newly_blocked) == ("done", 2500, 834)
