"""Redis pub/sub notices: small hints that shorten the wait; the database stays the truth.

Channels are namespaced by database name: Redis pub/sub ignores the db number, and two deployments (or two
test runs) sharing one Redis must not push each other's group ids.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from typing import Any

import redis
from django.conf import settings

logger = logging.getLogger(__name__)


def _namespace() -> str:
    return f"gw:{settings.DATABASES['default'].get('NAME', 'default')}"


def desired_channel() -> str:
    """Notice ``{"type", "groups": [id...], "versions": [id...]}``: new desired versions exist."""
    return f"{_namespace()}:push:desired"


def acks_channel() -> str:
    """Notice ``{"types": [...]}``: some instances ACKed or NACKed (wakes up wait_for_acks)."""
    return f"{_namespace()}:push:acks"


def credentials_channel() -> str:
    """Notice ``{"fingerprints": [...], "revoked": bool, "reason"}``: close these credentials' streams now."""
    return f"{_namespace()}:push:credentials"


@cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def client() -> redis.Redis:
    return _client(settings.REDIS_URL)


def publish(channel: str, notice: dict[str, Any]) -> None:
    """Best effort: a lost notice only delays delivery until the next reconcile."""
    try:
        client().publish(channel, json.dumps(notice, separators=(",", ":")))
    except redis.RedisError as exc:
        logger.warning("push notice on %s not sent (%s); the reconcile will deliver", channel, exc)
