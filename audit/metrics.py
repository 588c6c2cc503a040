"""/metrics readers for the operations layer this app owns: task runs from the job history, and, in one Redis
pipeline, the depth of every Celery queue with the age of beat's heartbeat. Registered from
``AuditConfig.ready`` (``worker_project.metrics`` runs readers and imports no app)."""

from __future__ import annotations

import time

import redis
from django.conf import settings
from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from audit.heartbeat import HEARTBEAT_KEY
from worker_project.queues import ALL as QUEUES

# kombu's Redis transport keeps one list per priority step; the plain name is priority 0.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def read_job_runs() -> list[Metric]:
    """Task runs by task and state: one GROUP BY over the job history (every worker, across restarts)."""
    from audit.models import JobRun

    runs = GaugeMetricFamily("gw_task_runs", "Task runs kept in the job history, by task and state",
                             labels=["task", "state"])
    for task_name, state, n in JobRun.objects.order_by().values_list("task_name", "state").annotate(n=Count("id")):
        runs.add_metric([task_name, state], n)
    return [runs]


def read_queues() -> list[Metric]:
    """Messages waiting per Celery queue and the age of beat's last heartbeat: one Redis pipeline."""
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        pipe = client.pipeline(transaction=False)
        for queue in QUEUES:
            for suffix in _PRIORITY_SUFFIXES:
                pipe.llen(queue + suffix)
        pipe.get(HEARTBEAT_KEY)
        values = pipe.execute()
    finally:
        client.close()
    depth = GaugeMetricFamily("gw_queue_depth", "Messages waiting in a Celery queue", labels=["queue"])
    per_queue = len(_PRIORITY_SUFFIXES)
    for i, queue in enumerate(QUEUES):
        depth.add_metric([queue], sum(values[i * per_queue:(i + 1) * per_queue]))
    age = GaugeMetricFamily("gw_beat_heartbeat_age_seconds",
                            "Seconds since the beat heartbeat job last ran (+Inf: never, or not for a day)")
    stamp = values[-1]
    age.add_metric([], float("inf") if stamp is None else max(0.0, time.time() - float(stamp)))
    return [depth, age]


def register_readers() -> None:
    from worker_project.metrics import add_reader

    add_reader("job_history", "database", read_job_runs)
    add_reader("queues", "redis", read_queues)
