"""Shared fixtures. Tests run against the real PostgreSQL and Redis that scripts/test starts, and real
Pebble, nginx and BIND started per session by the fixtures in tests/peers/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from django.conf import settings

pytest_plugins = [
    "tests.peers.nginx", "tests.peers.pebble", "tests.peers.bind", "tests.peers.ari_proxy", "tests.log_support",
    "tests.integrations_support",
]


@pytest.fixture(scope="session", autouse=True)
def remove_the_redis_keys_this_run_created() -> Iterator[None]:
    """Celery and kombu leave keys behind (``_kombu.binding.*`` of every queue a test worker consumed, among
    them per-run queue names, ``unacked*``, queue lists): after the run, delete the keys that were not there
    before it, so REDIS_URL's database does not fill up run after run. Keys that were there stay, since
    REDIS_URL may be a database others use (no FLUSHDB)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        # state the product keys by database ids (per-group request counters and rate windows, renewal locks):
        # the test database is new, so such keys left by an earlier run that was killed before this cleanup name
        # other rows under the same ids (a group's hourly rate window "used up" before its first request)
        for pattern in ("certificates:ondemand:*", "certificates:renew:*"):
            stale = list(client.scan_iter(match=pattern, count=1000))
            if stale:
                client.delete(*stale)
        before = set(client.scan_iter(count=1000))
    except redis.RedisError:  # the tests that need Redis will say so
        client.close()
        yield
        return
    yield
    created = [key for key in client.scan_iter(count=1000) if key not in before]
    for start in range(0, len(created), 500):
        client.delete(*created[start:start + 500])
    client.close()


@pytest.fixture(scope="session", autouse=True)
def end_idle_sessions_before_the_test_database_goes(django_db_setup: None, django_db_blocker: object) -> Iterator[None]:
    """Threads of in-process Celery workers and gRPC servers keep their own database connections
    (CELERY_DB_REUSE_MAX, CONN_MAX_AGE), idle once their test is over; dropping the test database at the end of
    the run would fail on them ("being accessed by other users") and leave it behind. Torn down before
    django_db_setup (it depends on it): ends those idle sessions first."""
    yield
    from django.db import connection

    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()")
