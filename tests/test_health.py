"""/health, /ready (503 with the reason when Redis is down) and /metrics, against a private redis-server."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from audit.heartbeat import record_heartbeat
from audit.models import JobRun, JobState
from worker_project import queues

pytestmark = pytest.mark.django_db


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError("private redis-server did not start")
        self.client = client

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path, settings) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    settings.REDIS_URL = server.url
    try:
        yield server
    finally:
        server.stop()


def test_health_answers_without_dependencies(client) -> None:
    response = client.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_ready_goes_503_naming_redis_when_redis_stops(client, private_redis: RedisServer) -> None:
    response = client.get("/ready")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ready"}

    private_redis.stop()
    response = client.get("/ready")
    assert response.status_code == 503
    problems = response.json()["problems"]
    assert len(problems) == 1 and problems[0].startswith("redis unreachable")


def test_ready_names_unapplied_migrations(client, private_redis: RedisServer) -> None:
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.recorder import MigrationRecorder

    # the app's newest migration (an older one unrecorded under an applied newer one is not "pending" to Django)
    leaf = max(name for app, name in MigrationLoader(connection).graph.leaf_nodes() if app == "audit")
    MigrationRecorder(connection).migration_qs.filter(app="audit", name=leaf).delete()
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["problems"] == [f"1 migration(s) not applied: audit.{leaf}"]


def metric_value(body: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    match = re.search("^" + pattern + "$", body, re.MULTILINE)
    assert match, f"{name}{{{labels}}} not in metrics"
    return float(match.group(1))


def test_metrics_report_requests_tasks_queues_and_heartbeat(client, private_redis: RedisServer) -> None:
    for i, state in enumerate([JobState.SUCCESS, JobState.SUCCESS, JobState.FAILURE]):
        JobRun.objects.create(task_id=f"t{i}", task_name="audit.beat_heartbeat", state=state)
    private_redis.client.rpush(queues.CONFIG, "a", "b", "c")
    private_redis.client.rpush("maintenance\x06\x166", "x")  # a priority-6 message counts too
    client.get("/health")

    body = client.get("/metrics").content.decode()
    assert metric_value(body, "gw_http_requests_total", 'method="GET",status="200"') >= 1
    assert metric_value(body, "gw_task_runs", 'state="success",task="audit.beat_heartbeat"') == 2
    assert metric_value(body, "gw_task_runs", 'state="failure",task="audit.beat_heartbeat"') == 1
    assert metric_value(body, "gw_queue_depth", f'queue="{queues.CONFIG}"') == 3
    assert metric_value(body, "gw_queue_depth", f'queue="{queues.MAINTENANCE}"') == 1
    assert metric_value(body, "gw_queue_depth", f'queue="{queues.CERTIFICATES}"') == 0
    assert metric_value(body, "gw_beat_heartbeat_age_seconds") == float("inf")
    assert metric_value(body, "gw_metrics_collector_up", 'collector="queues",store="redis"') == 1

    record_heartbeat(time.time() - 42)
    body = client.get("/metrics").content.decode()
    assert 41 <= metric_value(body, "gw_beat_heartbeat_age_seconds") < 50


def test_metrics_answer_when_redis_is_down(client, private_redis: RedisServer) -> None:
    private_redis.stop()
    response = client.get("/metrics")
    assert response.status_code == 200
    body = response.content.decode()
    assert metric_value(body, "gw_metrics_collector_up", 'collector="queues",store="redis"') == 0
    assert metric_value(body, "gw_metrics_collector_up", 'collector="job_history",store="database"') == 1


def test_metrics_scrape_is_cheap(client, private_redis: RedisServer, django_assert_max_num_queries) -> None:
    # a fixed number whatever the row counts: job history GROUP BY, certificates, orders GROUP BY, and analytics'
    # last five minutes of rollups, newest minute, anomalies in 24 h
    with django_assert_max_num_queries(6):
        assert client.get("/metrics").status_code == 200


def test_probes_answer_any_host_but_the_admin_does_not(client, settings, private_redis: RedisServer) -> None:
    """Kubelets and Prometheus reach a pod by IP; the rest of the site keeps ALLOWED_HOSTS."""
    settings.ALLOWED_HOSTS = ["worker.example.com"]
    assert client.get("/health", HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert client.get("/ready", HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert client.get("/metrics", HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert client.get("/admin/", HTTP_HOST="10.1.2.3:8000").status_code == 400
    assert client.get("/health", HTTP_HOST="worker.example.com").status_code == 200
