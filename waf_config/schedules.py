"""The WAF app's periodic jobs (registered by `manage.py setup_schedules`; edited in admin)."""

from worker_project.schedules import PeriodicJob

SCHEDULES = [
    PeriodicJob(
        name="waf: withdraw expired emergency rules",
        task="waf_config.withdraw_expired_rules",
        queue="config",
        every_seconds=30,
        expires_seconds=25,
        description="Withdraws emergency rules past expires_at (indexed live rules by expiry) and pushes the "
                    "emergency_rules state without them to every group.",
    ),
]
