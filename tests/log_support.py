"""Fixtures for the log pipeline tests: detectors seeded, a correlation engine on its own Redis prefix."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings

from logpipeline.correlation import Engine
from logpipeline.detectors import invalidate_config, seed_default_detectors


def clear_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def make_engine(redis_client: redis.Redis) -> Iterator:
    """Engines on fresh Redis prefixes (one per call), deleted afterwards."""
    prefixes: list[str] = []

    def make() -> Engine:
        prefix = f"lp-test:{uuid.uuid4().hex[:12]}:"
        prefixes.append(prefix)
        return Engine(client=redis_client, prefix=prefix)

    yield make
    for prefix in prefixes:
        clear_prefix(redis_client, prefix)


@pytest.fixture
def detectors(db) -> Iterator[None]:
    seed_default_detectors()
    invalidate_config()
    yield
    invalidate_config()
