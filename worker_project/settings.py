"""The one settings module. Everything comes from the environment (see docs/configuration.md)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from worker_project import queues
from worker_project.env import (
    ImproperlyConfiguredEnv,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    parse_database_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("WORKER_VAR_DIR", str(BASE_DIR / "var")) or BASE_DIR / "var")

# development (default) | test | production. Production refuses insecure defaults.
WORKER_ENV = (env_str("WORKER_ENV", "development") or "development").lower()
if WORKER_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"WORKER_ENV={WORKER_ENV!r}: use development, test or production")
PRODUCTION = WORKER_ENV == "production"

_DEV_SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"
try:
    SECRET_KEY = env_str("SECRET_KEY") or ""
    if not SECRET_KEY:
        if PRODUCTION:
            raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set when WORKER_ENV=production")
        SECRET_KEY = _DEV_SECRET_KEY

    DEBUG = env_bool("DEBUG", not PRODUCTION)
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["*"])
    CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

    DATABASES = {
        "default": parse_database_url(env_str("DATABASE_URL", "sqlite:///var/db.sqlite3") or "", BASE_DIR)
    }
    REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0") or ""

    # Field encryption: a comma-separated list of Fernet keys, newest first; all are tried to decrypt,
    # the first encrypts, so a key rotates by prepending a new one. Nothing re-encrypts existing rows yet:
    # keep an old key in the list while rows written under it remain.
    FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS")
    if not FIELD_ENCRYPTION_KEYS:
        if PRODUCTION:
            raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be set when WORKER_ENV=production")
        # Development only: a key derived from SECRET_KEY, stable across restarts.
        digest = hashlib.sha256(b"gateway-worker field encryption:" + SECRET_KEY.encode()).digest()
        FIELD_ENCRYPTION_KEYS = [base64.urlsafe_b64encode(digest).decode()]

    SENTRY_DSN = env_str("SENTRY_DSN", "") or ""
    SENTRY_ENVIRONMENT = env_str("SENTRY_ENVIRONMENT", WORKER_ENV)
    SENTRY_TRACES_SAMPLE_RATE = env_float("SENTRY_TRACES_SAMPLE_RATE", 0.0)
    LOG_LEVEL = (env_str("LOG_LEVEL", "INFO") or "INFO").upper()
    LOG_FORMAT = (env_str("LOG_FORMAT", "json" if PRODUCTION else "text") or "text").lower()

    # gRPC push plane
    GRPC_BIND = env_str("GRPC_BIND", "127.0.0.1:50051")
    GRPC_TLS_CERT = env_str("GRPC_TLS_CERT", str(VAR_DIR / "pki" / "server.crt"))
    GRPC_TLS_KEY = env_str("GRPC_TLS_KEY", str(VAR_DIR / "pki" / "server.key"))
    GRPC_CA_CERT = env_str("GRPC_CA_CERT", str(VAR_DIR / "pki" / "ca.crt"))
    GRPC_CA_KEY = env_str("GRPC_CA_KEY", str(VAR_DIR / "pki" / "ca.key"))
    GRPC_INSECURE = env_bool("GRPC_INSECURE", False)  # plaintext: development only, never the default
    # Largest message a Gateway may send on any RPC (a push-stream log batch); each RPC has a smaller limit of its
    # own (gateways/grpc_auth.py: Limits), e.g. 64 KiB for FetchResource and for one SendLogs entry.
    GRPC_MAX_MESSAGE_BYTES = env_int("GRPC_MAX_MESSAGE_BYTES", 4 * 1024 * 1024)
    GRPC_MAX_STREAMS_PER_CREDENTIAL = env_int("GRPC_MAX_STREAMS_PER_CREDENTIAL", 8)  # open streaming RPCs, per replica
    GRPC_UNARY_RATE = env_float("GRPC_UNARY_RATE", 20.0)  # unary calls per second per credential (burst: 2x)
    # A Gateway that stops reading: grpc buffers what it cannot deliver, so the bound is on updates sent but not
    # yet ACKed/NACKed per stream — their bytes, and the age of the oldest — past either, the stream is cut off.
    GRPC_UNANSWERED_MAX_BYTES = env_int("GRPC_UNANSWERED_MAX_BYTES", 64 * 1024 * 1024)
    GRPC_ANSWER_TIMEOUT_SECONDS = env_float("GRPC_ANSWER_TIMEOUT_SECONDS", 120.0)
    # Calls that arrived but the server's event loop has not taken up yet (a reconnect storm): grpc core refuses
    # calls past its own default of 1,000 at random (all past 3,000) and the Gateway sees CANCELLED.
    GRPC_MAX_PENDING_CALLS = env_int("GRPC_MAX_PENDING_CALLS", 20000)
    GRPC_CREDENTIAL_CACHE_SECONDS = env_float("GRPC_CREDENTIAL_CACHE_SECONDS", 5.0)  # revocation notices clear it
    PUSH_DEBOUNCE_SECONDS = env_float("PUSH_DEBOUNCE_SECONDS", 0.02)
    PUSH_RECONCILE_SECONDS = env_float("PUSH_RECONCILE_SECONDS", 30.0)
    GRPC_METRICS_PORT = env_int("GRPC_METRICS_PORT", 9108)  # run_grpc's own /metrics listener (0: none)
    GRPC_METRICS_BIND = env_str("GRPC_METRICS_BIND", "127.0.0.1")

    # Certificates
    ACME_DIRECTORY_URL = env_str("ACME_DIRECTORY_URL", "https://acme-staging-v02.api.letsencrypt.org/directory")
    ACME_CONTACT_EMAIL = env_str("ACME_CONTACT_EMAIL", "")
    ACME_CA_BUNDLE = env_str("ACME_CA_BUNDLE", "")  # TLS trust for the ACME directory (Pebble's in tests)
    CERT_TRUST_STORE = env_str("CERT_TRUST_STORE", "")  # PEM roots issued chains must build to
    CERT_RENEW_DAYS_BEFORE = env_int("CERT_RENEW_DAYS_BEFORE", 30)
    CERT_FAILOVER_DAYS = env_int("CERT_FAILOVER_DAYS", 7)
    CERT_TEMPORARY_VALIDITY_DAYS = env_int("CERT_TEMPORARY_VALIDITY_DAYS", 14)
    CERT_RETIRE_GRACE_HOURS = env_int("CERT_RETIRE_GRACE_HOURS", 24)
    CERT_ARI_BATCH = env_int("CERT_ARI_BATCH", 500)  # renewal windows polled per hourly run at most
    CERT_ORDER_DEADLINE_SECONDS = env_int("CERT_ORDER_DEADLINE_SECONDS", 600)
    CERT_RENEW_LOCK_SECONDS = env_float("CERT_RENEW_LOCK_SECONDS", 120.0)  # per-certificate Redis lock, refreshed
    CERT_CHALLENGE_ACK_TIMEOUT = env_float("CERT_CHALLENGE_ACK_TIMEOUT", 30.0)  # Gateways serving HTTP-01 tokens
    CERT_TEST_HOLD = env_str("CERT_TEST_HOLD", "") if WORKER_ENV == "test" else ""  # crash tests only: "step:secs"

    # Log pipeline (docs/logs.md)
    LOG_TRUSTED_PROXIES = env_list("LOG_TRUSTED_PROXIES", [])  # CIDRs whose X-Forwarded-For is believed
    LOG_MAX_LINE_BYTES = env_int("LOG_MAX_LINE_BYTES", 65536)  # a longer line is malformed, never parsed
    LOG_MALFORMED_SAMPLES = env_int("LOG_MALFORMED_SAMPLES", 20)  # newest rejected lines kept per source
    LOG_INTAKE_MAX_BODY_BYTES = env_int("LOG_INTAKE_MAX_BODY_BYTES", 16 * 1024 * 1024)  # HTTP door, decompressed
    LOG_INTAKE_MAX_INFLIGHT = env_int("LOG_INTAKE_MAX_INFLIGHT", 4)  # HTTP batches in progress fleet-wide
    LOG_INTAKE_RETRY_AFTER_SECONDS = env_int("LOG_INTAKE_RETRY_AFTER_SECONDS", 5)
    LOG_CORRELATION_PREFIX = env_str("LOG_CORRELATION_PREFIX", "lp:") or "lp:"  # Redis key prefix of windows
    LOG_INCIDENT_MERGE_HOURS = env_int("LOG_INCIDENT_MERGE_HOURS", 24)  # same subject within: same incident
    LOG_REQUEST_RETENTION_DAYS = env_int("LOG_REQUEST_RETENTION_DAYS", 7)  # RequestLog rows kept for replay
    LOG_ARCHIVE_DIR = env_str("LOG_ARCHIVE_DIR", str(VAR_DIR / "log-archive"))
    LOG_ARCHIVE_ENABLED = env_bool("LOG_ARCHIVE_ENABLED", True)  # archive a day before its rows are deleted

    # Notifications (docs/integrations.md). Email: Django's backends; SMTP settings here are the default server,
    # a channel may name its own (password in the channel's encrypted secret).
    EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
    EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
    EMAIL_PORT = env_int("EMAIL_PORT", 25)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")  # or EMAIL_HOST_PASSWORD_FILE
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
    EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
    DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "gateway-worker@localhost")
    NOTIFY_SOURCE = env_str("NOTIFY_SOURCE", "gateway-worker") or "gateway-worker"  # PagerDuty payload.source
    NOTIFY_HTTP_TIMEOUT = env_float("NOTIFY_HTTP_TIMEOUT", 10.0)
    NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 6)
    NOTIFY_RETRY_BASE_SECONDS = env_float("NOTIFY_RETRY_BASE_SECONDS", 30.0)
    NOTIFY_RETRY_MAX_SECONDS = env_float("NOTIFY_RETRY_MAX_SECONDS", 3600.0)
    NOTIFY_THROTTLE_SECONDS = env_int("NOTIFY_THROTTLE_SECONDS", 3600)  # one page per incident and channel within
    NOTIFY_SENDING_LEASE_SECONDS = env_int("NOTIFY_SENDING_LEASE_SECONDS", 600)

    # Threat-intelligence feeds
    THREAT_FEED_TIMEOUT = env_float("THREAT_FEED_TIMEOUT", 30.0)
    THREAT_FEED_MAX_BYTES = env_int("THREAT_FEED_MAX_BYTES", 16 * 1024 * 1024)
    THREAT_FEED_MIN_PREFIX_V4 = env_int("THREAT_FEED_MIN_PREFIX_V4", 8)  # broader (e.g. /7) is refused
    THREAT_FEED_MIN_PREFIX_V6 = env_int("THREAT_FEED_MIN_PREFIX_V6", 19)
    THREAT_FEED_MAX_ENTRIES = env_int("THREAT_FEED_MAX_ENTRIES", 50000)  # merged list cap (gateway.yaml size)
    # The gateway.yaml config document whose waf.ip_blacklist the merged list is proposed for (empty: none)
    THREAT_FEED_CONFIG_DOCUMENT = env_str("THREAT_FEED_CONFIG_DOCUMENT", "") or ""

    # Analytics (docs/analytics.md)
    ANALYTICS_ROLLUP_FROM_REQUESTLOG = env_bool("ANALYTICS_ROLLUP_FROM_REQUESTLOG", True)  # off: ingest calls add_batch
    ANALYTICS_ROLLUP_BATCH = env_int("ANALYTICS_ROLLUP_BATCH", 20000)  # RequestLog rows per rollup transaction
    ANALYTICS_MINUTE_RETENTION_DAYS = env_int("ANALYTICS_MINUTE_RETENTION_DAYS", 14)  # hour and day rows stay
    ANALYTICS_BASELINE_WEEKS = env_int("ANALYTICS_BASELINE_WEEKS", 4)  # same hour of week, this many weeks back
    ANALYTICS_ANOMALY_THRESHOLD = env_float("ANALYTICS_ANOMALY_THRESHOLD", 6.0)  # robust z (MAD units)
    ANALYTICS_ANOMALY_MIN_REQUESTS = env_int("ANALYTICS_ANOMALY_MIN_REQUESTS", 50)  # hours quieter are not judged
    ANALYTICS_CAPACITY_RPS = env_float("ANALYTICS_CAPACITY_RPS", 2000.0)  # per instance; routes share it
    ANALYTICS_FORECAST_DAYS = env_int("ANALYTICS_FORECAST_DAYS", 28)  # daily peaks the trend is fitted on
    ANALYTICS_REPORT_DIR = env_str("ANALYTICS_REPORT_DIR", str(VAR_DIR / "reports")) or str(VAR_DIR / "reports")
    ANALYTICS_CERT_EXPIRY_DAYS = env_int("ANALYTICS_CERT_EXPIRY_DAYS", 30)  # reports list certificates expiring within

    # Job history
    JOB_HISTORY_RETENTION_DAYS = env_int("JOB_HISTORY_RETENTION_DAYS", 30)

    # Flower
    FLOWER_BASIC_AUTH = env_str("FLOWER_BASIC_AUTH", "")

    # The web role serves the admin's static files itself (gunicorn, no extra server): off when a proxy/CDN does.
    SERVE_STATIC = env_bool("SERVE_STATIC", True)
except ImproperlyConfiguredEnv as exc:  # a typed reader refused a value: say which
    raise ImproperlyConfigured(str(exc)) from exc

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "rest_framework",
    "rest_framework.authtoken",
    "audit",
    "gateways",
    "certificates",
    "waf_config",
    "logpipeline",
    "analytics",
    "integrations",
]

MIDDLEWARE = [
    "worker_project.metrics.RequestMetricsMiddleware",
    "worker_project.views.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "worker_project.urls"
WSGI_APPLICATION = "worker_project.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_TZ = True
USE_I18N = False
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

if PRODUCTION:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Celery: Redis broker, JSON only, late acks so a crash redelivers, one queue per area.
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None  # job history lives in audit.JobRun, not in a result backend
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("CELERY_PREFETCH_MULTIPLIER", 1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 900)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 840)
# Celery's Django fixup closes every database connection before and after each task unless this is set (then it
# closes the running thread's connections once every this-many tasks, counted per worker process): without it
# CONN_MAX_AGE does nothing in a worker and each task pays a new PostgreSQL connection. With it,
# worker_project.celery closes at each task boundary only the connections Django itself would (past CONN_MAX_AGE,
# broken, or left outside autocommit).
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_TASK_DEFAULT_QUEUE = queues.MAINTENANCE
CELERY_TASK_ROUTES = {
    "certificates.*": {"queue": queues.CERTIFICATES},
    "waf_config.*": {"queue": queues.CONFIG},
    "gateways.*": {"queue": queues.CONFIG},
    "logpipeline.purge_request_logs": {"queue": queues.MAINTENANCE},
    "analytics.purge_minute_rollups": {"queue": queues.MAINTENANCE},
    "logpipeline.*": {"queue": queues.LOGS},
    "analytics.*": {"queue": queues.ANALYTICS},
    "integrations.*": {"queue": queues.INTEGRATIONS},
    "audit.*": {"queue": queues.MAINTENANCE},
}
# visibility_timeout must exceed the longest task (plus its ETA) or Redis redelivers a running task.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 300}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_SEND_TASK_EVENTS = True  # for Flower
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {
            "()": "worker_project.logging.TextFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "worker_project.logging.JsonFormatter"},
    },
    "filters": {"redact": {"()": "worker_project.logging.RedactSecretsFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

from worker_project.sentry import init_sentry  # noqa: E402  (after settings values exist)

init_sentry(SENTRY_DSN, environment=SENTRY_ENVIRONMENT, traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE)

# JSON API (Django REST framework): token or session auth, Django model permissions (the roles admin uses).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "UNAUTHENTICATED_USER": None,
}

# WAF deployments: the canary group, how long it soaks with no NACK and no block-rate spike before the fleet gets a
# version, how long each push may take to be ACKed; emergency rules' longest life (docs/configuration.md, docs/waf.md).
WAF_CANARY_GROUP = env_str("WAF_CANARY_GROUP", "canary") or "canary"
WAF_SOAK_SECONDS = env_int("WAF_SOAK_SECONDS", 300)
WAF_ACK_TIMEOUT_SECONDS = env_int("WAF_ACK_TIMEOUT_SECONDS", 120)
WAF_EMERGENCY_MAX_SECONDS = env_int("WAF_EMERGENCY_MAX_SECONDS", 7 * 86400)
# a spike: the canary's refused share since its ACK > baseline share x RATIO and >= baseline + MIN_DELTA, both windows
# holding at least MIN_REQUESTS stored requests; the baseline is the BASELINE_SECONDS before the rollout started
WAF_BLOCK_RATE_SPIKE_RATIO = env_float("WAF_BLOCK_RATE_SPIKE_RATIO", 2.0)
WAF_BLOCK_RATE_MIN_DELTA = env_float("WAF_BLOCK_RATE_MIN_DELTA", 0.02)
WAF_BLOCK_RATE_MIN_REQUESTS = env_int("WAF_BLOCK_RATE_MIN_REQUESTS", 200)
WAF_BLOCK_RATE_BASELINE_SECONDS = env_int("WAF_BLOCK_RATE_BASELINE_SECONDS", 3600)
WAF_BLOCK_RATE_CHECK_SECONDS = env_float("WAF_BLOCK_RATE_CHECK_SECONDS", 5.0)
# replays of sets larger than this are queued as the task run_replay from admin and the API (progress written every
# WAF_REPLAY_PROGRESS_EVERY requests); smaller ones run within the request
WAF_REPLAY_INLINE_MAX_REQUESTS = env_int("WAF_REPLAY_INLINE_MAX_REQUESTS", 20000)
WAF_REPLAY_PROGRESS_EVERY = env_int("WAF_REPLAY_PROGRESS_EVERY", 10000)
