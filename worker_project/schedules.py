"""Periodic jobs declared in code, registered in django_celery_beat's tables by `manage.py setup_schedules`.

Each app may have ``<app>/schedules.py`` with ``SCHEDULES = [PeriodicJob(...)]``. Registration is idempotent:

- a job missing from the database is created with the code's schedule, enabled;
- an existing job gets the code's task, queue, expiry, kwargs and description;
- its schedule (interval or crontab) and its enabled flag are NEVER changed once the row exists: they belong
  to whoever runs the system and are edited in admin. A drift from the code's schedule is reported, and
  ``setup_schedules --reset-schedule NAME`` applies the code's schedule to that one job on purpose.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import transaction

# Rows that django_celery_beat or Celery manage themselves: never reported as unknown.
BUILTIN_TASKS = {"celery.backend_cleanup"}


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    task: str
    queue: str
    every_seconds: float | None = None  # whole seconds
    crontab: str | None = None  # "minute hour day-of-month month-of-year day-of-week", UTC
    expires_seconds: int | None = None  # drop a run not started by then (just under the period)
    description: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not self.task or not self.queue:
            raise ValueError(f"periodic job {self.name!r}: name, task and queue are required")
        if (self.every_seconds is None) == (self.crontab is None):
            raise ValueError(f"periodic job {self.name!r}: give exactly one of every_seconds or crontab")
        if self.every_seconds is not None and (self.every_seconds < 1 or self.every_seconds != int(self.every_seconds)):
            raise ValueError(f"periodic job {self.name!r}: every_seconds must be a whole number of seconds >= 1")
        if self.crontab is not None and len(self.crontab.split()) != 5:
            raise ValueError(f"periodic job {self.name!r}: crontab {self.crontab!r} needs 5 fields")

    def schedule_text(self) -> str:
        return f"every {self.every_seconds:g}s" if self.every_seconds is not None else f"crontab {self.crontab} UTC"


@dataclass
class SyncResult:
    name: str
    action: str  # created | updated | unchanged | reset | unknown
    details: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.action:9} {self.name}" + (f": {'; '.join(self.details)}" if self.details else "")


def discover_jobs() -> list[PeriodicJob]:
    """Every ``SCHEDULES`` of every installed app, in app order; a duplicate name is an error."""
    jobs: list[PeriodicJob] = []
    seen: dict[str, str] = {}
    for config in apps.get_app_configs():
        module_name = f"{config.name}.schedules"
        if importlib.util.find_spec(module_name) is None:
            continue
        for job in getattr(importlib.import_module(module_name), "SCHEDULES", []):
            if job.name in seen:
                raise ValueError(f"periodic job {job.name!r} declared by both {seen[job.name]} and {config.name}")
            seen[job.name] = config.name
            jobs.append(job)
    return jobs


def _schedule_of_job(job: PeriodicJob) -> dict[str, Any]:
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule

    if job.every_seconds is not None:
        every = int(job.every_seconds)  # a float from settings (30.0) is fine as long as it is whole
        interval = IntervalSchedule.objects.filter(every=every, period=IntervalSchedule.SECONDS).first()
        interval = interval or IntervalSchedule.objects.create(every=every, period=IntervalSchedule.SECONDS)
        return {"interval": interval, "crontab": None, "solar": None, "clocked": None}
    assert job.crontab is not None
    minute, hour, dom, month, dow = job.crontab.split()
    fields = {"minute": minute, "hour": hour, "day_of_month": dom, "month_of_year": month, "day_of_week": dow,
              "timezone": "UTC"}
    crontab = CrontabSchedule.objects.filter(**fields).first() or CrontabSchedule.objects.create(**fields)
    return {"interval": None, "crontab": crontab, "solar": None, "clocked": None}


def _row_schedule_text(row: Any) -> str:
    from django_celery_beat.models import IntervalSchedule

    if row.interval_id:
        seconds = row.interval.every * {
            IntervalSchedule.DAYS: 86400, IntervalSchedule.HOURS: 3600, IntervalSchedule.MINUTES: 60,
            IntervalSchedule.SECONDS: 1, IntervalSchedule.MICROSECONDS: 1e-6,
        }[row.interval.period]
        return f"every {seconds:g}s"
    if row.crontab_id:
        c = row.crontab
        return f"crontab {c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week} {c.timezone}"
    return "another kind of schedule"


def _check_tasks_exist(jobs: list[PeriodicJob]) -> None:
    from worker_project.celery import app

    app.loader.import_default_modules()  # runs autodiscovery, so every app's tasks are registered
    missing = [f"{job.name} -> {job.task}" for job in jobs if job.task not in app.tasks]
    if missing:
        raise ValueError("periodic jobs name tasks that do not exist: " + ", ".join(missing))


def sync_schedules(jobs: list[PeriodicJob] | None = None, reset: set[str] | None = None,
                   dry_run: bool = False) -> list[SyncResult]:
    """Register ``jobs`` (default: every app's) in the beat tables; see the module docstring for the rules."""
    from django_celery_beat.models import PeriodicTask

    jobs = discover_jobs() if jobs is None else jobs
    reset = set(reset or ())
    unknown_resets = reset - {job.name for job in jobs}
    if unknown_resets:
        raise ValueError(f"--reset-schedule names no declared job: {', '.join(sorted(unknown_resets))}")
    _check_tasks_exist(jobs)
    results: list[SyncResult] = []
    with transaction.atomic():
        for job in jobs:
            results.append(_sync_one(job, job.name in reset))
        declared = {job.name for job in jobs}
        for row in PeriodicTask.objects.exclude(name__in=declared).exclude(task__in=BUILTIN_TASKS).order_by("name"):
            results.append(SyncResult(row.name, "unknown", [f"{row.task}: not declared in code, left as it is"]))
        if dry_run:
            transaction.set_rollback(True)
    return results


def _sync_one(job: PeriodicJob, reset_schedule: bool) -> SyncResult:
    from django_celery_beat.models import PeriodicTask

    wanted = {
        "task": job.task,
        "queue": job.queue,
        "expire_seconds": job.expires_seconds,
        "description": job.description,
        "kwargs": json.dumps(job.kwargs, sort_keys=True),
    }
    row = PeriodicTask.objects.select_for_update().filter(name=job.name).first()
    if row is None:
        PeriodicTask.objects.create(name=job.name, enabled=True, **wanted, **_schedule_of_job(job))
        return SyncResult(job.name, "created", [job.schedule_text()])
    changed = []
    for attr, value in wanted.items():
        current = getattr(row, attr)
        if attr == "kwargs":
            current = json.dumps(json.loads(current or "{}"), sort_keys=True)
        if current != value:
            setattr(row, attr, value)
            changed.append(attr)
    details = [f"{attr} set from code" for attr in changed]
    current_schedule, code_schedule = _row_schedule_text(row), job.schedule_text()
    action = "updated" if changed else "unchanged"
    if current_schedule != code_schedule:
        if reset_schedule:
            for attr, value in _schedule_of_job(job).items():
                setattr(row, attr, value)
            changed.append("schedule")
            action = "reset"
            details.append(f"schedule {current_schedule} -> {code_schedule} (reset on request)")
        else:
            details.append(f"kept schedule {current_schedule} set in admin (code says {code_schedule}; "
                           f"--reset-schedule {job.name} applies it)")
    if changed:
        row.save()  # save(), not update(): its signal tells the running beat that schedules changed
    return SyncResult(job.name, action, details)
