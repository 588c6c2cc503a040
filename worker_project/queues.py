"""The Celery queues, one per area. Routes (settings.CELERY_TASK_ROUTES), the Celery app's queue list, periodic
jobs and tests name queues through these constants; the Procfile, docker-compose.yml and the Helm chart list
them for ``celery worker -Q``."""

from __future__ import annotations

CERTIFICATES = "certificates"  # ACME orders: network-bound, the certworker role runs many at once
CONFIG = "config"  # WAF rule sets, Gateway configuration, the push plane's jobs
LOGS = "logs"
ANALYTICS = "analytics"
INTEGRATIONS = "integrations"
MAINTENANCE = "maintenance"  # audit upkeep, heartbeats, and any task without a route

ALL = (CERTIFICATES, CONFIG, LOGS, ANALYTICS, INTEGRATIONS, MAINTENANCE)
