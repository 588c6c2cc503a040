"""The certificates app's periodic jobs (registered by `manage.py setup_schedules`; edited in admin)."""

from worker_project import queues
from worker_project.schedules import PeriodicJob

SCHEDULES = [
    PeriodicJob(
        name="certificates: scan expiring certificates",
        task="certificates.scan_expiring_certificates",
        queue=queues.CERTIFICATES,
        crontab="7 2 * * *",
        expires_seconds=23 * 3600,
        description="Enqueues a renewal for every certificate due (indexed renew_after <= now) and a failover "
                    "for failing certificates within CERT_FAILOVER_DAYS of expiry.",
    ),
    PeriodicJob(
        name="certificates: retry failed renewals",
        task="certificates.retry_failed_renewals",
        queue=queues.CERTIFICATES,
        every_seconds=300,
        expires_seconds=290,
        description="Re-enqueues failing certificates whose backoff (next_attempt_at) has passed.",
    ),
    PeriodicJob(
        name="certificates: retire superseded versions",
        task="certificates.retire_superseded_versions",
        queue=queues.CERTIFICATES,
        every_seconds=3600,
        expires_seconds=3500,
        description="Marks versions retired CERT_RETIRE_GRACE_HOURS after a newer one became current.",
    ),
    PeriodicJob(
        name="certificates: refresh renewal information",
        task="certificates.refresh_renewal_info",
        queue=queues.CERTIFICATES,
        every_seconds=3600,
        expires_seconds=3500,
        description="Polls the CA's renewal window (RFC 9773 ARI) for certificates whose next check "
                    "(ari_next_check_at, from Retry-After) is due, at most CERT_ARI_BATCH per run, and brings "
                    "renew_after forward when the CA moved the window earlier.",
    ),
]
