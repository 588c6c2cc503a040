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
