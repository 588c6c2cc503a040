"""The integrations app's periodic jobs (registered by `manage.py setup_schedules`; edited in admin)."""

from worker_project import queues
from worker_project.schedules import PeriodicJob

SCHEDULES = [
    PeriodicJob(
        name="integrations: deliver due notifications",
        task="integrations.deliver_due_notifications",
        queue=queues.INTEGRATIONS,
        every_seconds=60,
        expires_seconds=55,
        description="Enqueues pending notifications whose delivery task was lost (broker down at notify time) "
                    "or whose retry is due; marks rows abandoned mid-send as failed (never resent).",
    ),
    PeriodicJob(
        name="integrations: fetch threat feeds",
        task="integrations.fetch_threat_feeds",
        queue=queues.INTEGRATIONS,
        every_seconds=3600,
        expires_seconds=3500,
        description="Conditional GET (ETag / If-Modified-Since) of every enabled threat feed; validated entries "
                    "stored with provenance; the merged list (allow list applied) proposed as a new gateway.yaml "
                    "version when it changed (THREAT_FEED_CONFIG_DOCUMENT).",
    ),
]
