"""The audit app's periodic jobs (registered by `manage.py setup_schedules`)."""

from worker_project import queues
from worker_project.schedules import PeriodicJob

SCHEDULES = [
    PeriodicJob(
        name="audit: beat heartbeat",
        task="audit.beat_heartbeat",
        queue=queues.MAINTENANCE,
        every_seconds=60,
        expires_seconds=55,
        description="Records that beat and a maintenance worker are alive; /metrics shows its age.",
    ),
    PeriodicJob(
        name="audit: purge job history",
        task="audit.purge_job_history",
        queue=queues.MAINTENANCE,
        crontab="17 3 * * *",
        expires_seconds=3600,
        description="Deletes job runs older than JOB_HISTORY_RETENTION_DAYS.",
    ),
]
