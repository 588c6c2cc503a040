"""Job history through a REAL Celery worker consuming from the real Redis broker (a private queue per run)."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from audit.jobs import args_digest, args_preview
from audit.models import JobRun, JobState
from audit.retention import purge_job_history
from worker_project import queues
from worker_project.celery import app


@app.task(name="tests.jobs.add", acks_late=True)
def add(x: int, y: int, token: str = "") -> int:
    time.sleep(0.05)  # a measurable duration
    return x + y


@app.task(name="tests.jobs.explode", acks_late=True)
def explode(certificate_id: int) -> None:
    raise ValueError(f"renewal of {certificate_id} failed: token=abc123supersecret rejected")


def wait_for_run(task_id: str, states: set[str], timeout: float = 20.0) -> JobRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = JobRun.objects.filter(task_id=task_id).first()
        if run is not None and run.state in states:
            return run
        time.sleep(0.1)
    rows = list(JobRun.objects.filter(task_id=task_id).values())
    raise AssertionError(f"job run {task_id} not in {states} after {timeout}s: {rows}")


@pytest.fixture
def queue_name() -> str:
    return f"test-jobs-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def worker(queue_name: str, transactional_db):  # noqa: ARG001 - the worker thread must see committed rows
    with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False, queues=[queue_name],
                      shutdown_timeout=20) as w:
        yield w


@pytest.mark.slow
def test_task_run_end_to_end_is_recorded(worker, queue_name: str) -> None:
    result = add.apply_async((2, 3), {"token": "supersecret-value"}, queue=queue_name)
    run = wait_for_run(result.id, {JobState.SUCCESS})
    assert run.task_name == "tests.jobs.add"
    assert run.queue == queue_name
    assert run.started_at is not None and run.finished_at is not None and run.finished_at >= run.started_at
    assert run.duration_ms is not None and run.duration_ms >= 50
    assert run.worker == worker.hostname
    assert run.args_digest == args_digest([2, 3], {"token": "supersecret-value"})
    assert run.args_preview == "(2, 3, token=[redacted])"
    row_text = " ".join(str(v) for v in JobRun.objects.filter(pk=run.pk).values().first().values())
    assert "supersecret" not in row_text


@pytest.mark.slow
def test_failing_task_records_failure_and_redacted_error(worker, queue_name: str) -> None:
    result = explode.apply_async((42,), queue=queue_name, headers={"periodic_task_name": "nightly explode"})
    run = wait_for_run(result.id, {JobState.FAILURE})
    assert run.error.startswith("ValueError: renewal of 42 failed")
    assert "abc123supersecret" not in run.error
    assert run.duration_ms is not None
    assert run.periodic_task_name == "nightly explode"
    assert run.args_preview == "(42)"


def test_args_preview_keeps_ids_and_hides_content() -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"
    preview = args_preview([7, "3f2a9c1e-1111-4222-8333-444455556666", pem], {"api_key": "k", "group": "edge-eu"})
    assert preview == "(7, '3f2a9c1e-1111-4222-8333-444455556666', …, api_key=[redacted], group='edge-eu')"
    assert len(args_preview(list(range(500)), {})) <= 200


@pytest.mark.django_db
def test_purge_job_history_deletes_only_old_runs() -> None:
    old = JobRun.objects.create(task_id="old", task_name="t", state=JobState.SUCCESS)
    JobRun.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))
    JobRun.objects.create(task_id="new", task_name="t", state=JobState.SUCCESS)
    assert purge_job_history(30) == 1
    assert list(JobRun.objects.values_list("task_id", flat=True)) == ["new"]
    assert purge_job_history(30) == 0  # idempotent
    with pytest.raises(ValueError, match="at least 1 day"):
        purge_job_history(0)


@pytest.mark.django_db
def test_purge_task_is_routed_to_maintenance() -> None:
    from audit.tasks import purge_job_history as task

    assert task.name == "audit.purge_job_history"
    assert app.amqp.router.route({}, task.name)["queue"].name == queues.MAINTENANCE


def test_each_queue_receives_only_its_own_messages(settings) -> None:
    """Real publishes to the Redis broker: a task routed to one queue lands in that list and no other."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    from worker_project.celery import QUEUES

    for queue in QUEUES:
        client.delete(queue)
    try:
        for queue in QUEUES:
            add.apply_async((1, 2), queue=queue)
            depths = {q: client.llen(q) for q in QUEUES}
            assert depths[queue] == 1 and sum(depths.values()) == 1, f"publish to {queue}: {depths}"
            client.delete(queue)
    finally:
        for queue in QUEUES:
            client.delete(queue)
