"""The log pipeline's periodic jobs (registered by `manage.py setup_schedules`)."""

from worker_project.schedules import PeriodicJob

SCHEDULES = [
    PeriodicJob(
        name="logpipeline: archive and purge request logs",
        task="logpipeline.purge_request_logs",
        queue="maintenance",
        crontab="41 2 * * *",
        expires_seconds=3600,
        description="Archives each day older than LOG_REQUEST_RETENTION_DAYS to LOG_ARCHIVE_DIR, then deletes it.",
    ),
]
