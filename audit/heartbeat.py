"""Beat liveness: the heartbeat task stores the time it ran in Redis; /metrics reports its age."""

from __future__ import annotations

import time

import redis
from django.conf import settings

HEARTBEAT_KEY = "gateway-worker:beat:last-heartbeat"
# Kept a day: an absent key then means "never, or not for a day", which /metrics reports as +Inf.
HEARTBEAT_TTL_SECONDS = 86400


def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)


def record_heartbeat(now: float | None = None) -> float:
    stamp = time.time() if now is None else now
    client = _client()
    try:
        client.set(HEARTBEAT_KEY, repr(stamp), ex=HEARTBEAT_TTL_SECONDS)
    finally:
        client.close()
    return stamp


def heartbeat_age_seconds(client: redis.Redis | None = None) -> float:
    """Seconds since the last heartbeat; +Inf when there is none."""
    own = client is None
    client = client or _client()
    try:
        raw = client.get(HEARTBEAT_KEY)
    finally:
        if own:
            client.close()
    if raw is None:
        return float("inf")
    return max(0.0, time.time() - float(raw))
