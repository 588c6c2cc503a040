"""The analytics app's periodic jobs (registered by `manage.py setup_schedules`; edited in admin)."""

from worker_project import queues
from worker_project.schedules import PeriodicJob

SCHEDULES = [
    PeriodicJob(
        name="analytics: roll up new requests",
        task="analytics.rollup_new_requests",
        queue=queues.ANALYTICS,
        every_seconds=60,
        expires_seconds=55,
        description="Counts RequestLog rows past the watermark into minute, hour and day rollups "
                    "(off with ANALYTICS_ROLLUP_FROM_REQUESTLOG=false when the pipeline calls add_batch).",
    ),
    PeriodicJob(
        name="analytics: detect anomalies",
        task="analytics.detect_anomalies",
        queue=queues.ANALYTICS,
        crontab="7 * * * *",
        expires_seconds=3300,
        description="Judges the last closed hours of every route against its hour-of-week baseline.",
    ),
    PeriodicJob(
        name="analytics: forecast capacity",
        task="analytics.forecast_capacity",
        queue=queues.ANALYTICS,
        crontab="15 0 * * *",
        expires_seconds=23 * 3600,
        description="Trend of daily peaks per instance and route; days until ANALYTICS_CAPACITY_RPS.",
    ),
    PeriodicJob(
        name="analytics: daily report",
        task="analytics.generate_report",
        queue=queues.ANALYTICS,
        crontab="30 0 * * *",
        expires_seconds=23 * 3600,
        kwargs={"kind": "daily"},
        description="Yesterday's report (PDF + HTML), stored and announced through the notification channels.",
    ),
    PeriodicJob(
        name="analytics: weekly report",
        task="analytics.generate_report",
        queue=queues.ANALYTICS,
        crontab="45 0 * * 1",
        expires_seconds=6 * 24 * 3600,
        kwargs={"kind": "weekly"},
        description="Last week's (Monday to Monday, UTC) report, stored and announced.",
    ),
    PeriodicJob(
        name="analytics: purge minute rollups",
        task="analytics.purge_minute_rollups",
        queue=queues.MAINTENANCE,
        crontab="51 2 * * *",
        expires_seconds=3600,
        description="Minute rows older than ANALYTICS_MINUTE_RETENTION_DAYS (hour and day rows stay).",
    ),
]
