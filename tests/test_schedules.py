"""setup_schedules: idempotent, never clobbers a schedule edited in admin; beat fires from the database."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.management import CommandError, call_command
from django.db import connection
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from audit.heartbeat import heartbeat_age_seconds
from audit.models import JobRun, JobState
from worker_project import queues
from worker_project.celery import app
from worker_project.schedules import PeriodicJob, discover_jobs, sync_schedules

HEARTBEAT = "audit: beat heartbeat"
ROOT = Path(__file__).resolve().parent.parent


def run_setup(*args: str) -> str:
    out = io.StringIO()
    call_command("setup_schedules", *args, stdout=out)
    return out.getvalue()


def snapshot() -> list[tuple]:
    return list(PeriodicTask.objects.order_by("name").values_list(
        "id", "name", "task", "queue", "interval_id", "crontab_id", "expire_seconds", "enabled", "description"))


@pytest.mark.django_db
def test_setup_schedules_is_idempotent() -> None:
    first = run_setup()
    assert f"created   {HEARTBEAT}: every 60s" in first
    rows = snapshot()
    assert {r[1] for r in rows} >= {HEARTBEAT, "audit: purge job history"}
    intervals, crontabs = IntervalSchedule.objects.count(), PeriodicTask.objects.filter(crontab__isnull=False).count()

    second = run_setup()
    assert "created" not in second and f"unchanged {HEARTBEAT}" in second
    assert snapshot() == rows
    assert IntervalSchedule.objects.count() == intervals
    assert PeriodicTask.objects.filter(crontab__isnull=False).count() == crontabs


@pytest.mark.django_db
def test_admin_edited_interval_is_kept_and_drift_reported() -> None:
    run_setup()
    row = PeriodicTask.objects.get(name=HEARTBEAT)
    row.interval = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.MINUTES)
    row.queue = "wrong"
    row.enabled = False
    row.save()

    out = run_setup()
    row.refresh_from_db()
    assert (row.interval.every, row.interval.period) == (5, IntervalSchedule.MINUTES)  # the admin's choice stays
    assert row.enabled is False
    assert row.queue == queues.MAINTENANCE  # routing comes from code
    assert "kept schedule every 300s set in admin (code says every 60s" in out

    out = run_setup("--reset-schedule", HEARTBEAT)
    row.refresh_from_db()
    assert (row.interval.every, row.interval.period) == (60, IntervalSchedule.SECONDS)
    assert f"reset     {HEARTBEAT}" in out


@pytest.mark.django_db
def test_only_existing_tasks_are_registered() -> None:
    with pytest.raises(ValueError, match="do not exist: ghost -> nowhere.ghost"):
        sync_schedules([PeriodicJob(name="ghost", task="nowhere.ghost", queue=queues.MAINTENANCE, every_seconds=5)])
    assert not PeriodicTask.objects.filter(name="ghost").exists()
    with pytest.raises(CommandError, match="names no declared job: nope"):
        run_setup("--reset-schedule", "nope")


@pytest.mark.django_db
def test_dry_run_changes_nothing_and_unknown_rows_are_reported() -> None:
    assert f"dry run: schedules: {len(discover_jobs())} created" in run_setup("--dry-run")
    assert not PeriodicTask.objects.exists()
    interval = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="hand made", task="audit.beat_heartbeat", interval=interval)
    assert "unknown   hand made: audit.beat_heartbeat: not declared in code, left as it is" in run_setup()


def test_periodic_job_validation() -> None:
    with pytest.raises(ValueError, match="exactly one of every_seconds or crontab"):
        PeriodicJob(name="x", task="t", queue="q")
    with pytest.raises(ValueError, match="needs 5 fields"):
        PeriodicJob(name="x", task="t", queue="q", crontab="* *")
    assert {job.task for job in discover_jobs()} >= {"audit.beat_heartbeat", "audit.purge_job_history"}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_beat_fires_heartbeat_from_database_schedule(tmp_path: Path, settings) -> None:
    """A real `celery beat` (DatabaseScheduler) and a real worker: the job fires and lands in job history."""
    if connection.vendor != "postgresql":
        pytest.skip("beat runs in a subprocess and needs the test database by URL (PostgreSQL)")
    run_setup()
    queue = f"test-beat-{uuid.uuid4().hex[:8]}"
    row = PeriodicTask.objects.get(name=HEARTBEAT)
    row.interval = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)  # as in admin
    row.queue = queue
    row.save()

    db = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/"
                                          f"{db['NAME']}", "REDIS_URL": settings.REDIS_URL, "WORKER_ENV": "test"}
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker_project", "beat", "-S",
         "django_celery_beat.schedulers:DatabaseScheduler", "--loglevel=INFO",
         "--pidfile", str(tmp_path / "beat.pid"), "-s", str(tmp_path / "beat-schedule")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue], shutdown_timeout=20):
            deadline = time.monotonic() + 45
            run = None
            while time.monotonic() < deadline and run is None:
                run = JobRun.objects.filter(periodic_task_name=HEARTBEAT, state=JobState.SUCCESS).first()
                time.sleep(0.2)
    finally:
        beat.terminate()
        output = beat.communicate(timeout=20)[0]
    assert run is not None, f"no heartbeat run recorded; beat said:\n{output[-3000:]}"
    assert run.task_name == "audit.beat_heartbeat" and run.queue == queue
    assert heartbeat_age_seconds() < 60


@pytest.mark.django_db
def test_float_interval_from_settings_does_not_drift() -> None:
    job = PeriodicJob(name="float", task="audit.beat_heartbeat", queue=queues.MAINTENANCE, every_seconds=30.0)
    assert str(sync_schedules([job])[0]) == "created   float: every 30s"
    assert sync_schedules([job])[0].action == "unchanged"
    with pytest.raises(ValueError, match="whole number"):
        PeriodicJob(name="x", task="t", queue="q", every_seconds=0.5)


def test_every_route_and_periodic_job_names_a_declared_queue(settings) -> None:  # type: ignore[no-untyped-def]
    from worker_project.celery import app
    from worker_project.schedules import discover_jobs

    assert {r["queue"] for r in settings.CELERY_TASK_ROUTES.values()} | {settings.CELERY_TASK_DEFAULT_QUEUE} == set(
        queues.ALL)
    assert [q.name for q in app.conf.task_queues] == list(queues.ALL)
    assert {job.queue for job in discover_jobs()} <= set(queues.ALL)
