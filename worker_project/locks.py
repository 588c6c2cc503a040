"""A Redis lock with an owner token and an expiry: only the holder can refresh or release it.

Why not ``redis.lock.Lock``: we want the token visible (so a crashed holder's lock simply expires and a
redelivered task takes over) and a background refresher for long ACME orders, with no thread-local magic.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

# Only the owner may extend or delete: compare the token and act in one atomic step.
_REFRESH = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LockNotAcquired(Exception):
    """Somebody else holds the lock."""


@lru_cache(maxsize=8)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def get_redis() -> redis.Redis:
    return _client(settings.REDIS_URL)


class RedisLock:
    """``acquire()`` sets ``key`` to a random token with a TTL if absent; ``refresh()``/``release()`` only
    act while the token still matches, so a holder whose lock expired can never delete its successor's."""

    def __init__(self, key: str, ttl_seconds: float = 60.0, client: redis.Redis | None = None) -> None:
        self.key = key
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self.client = client or get_redis()
        self.token = secrets.token_hex(16)
        self._refresh = self.client.register_script(_REFRESH)
        self._release = self.client.register_script(_RELEASE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def acquire(self) -> bool:
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def refresh(self) -> bool:
        ok = bool(self._refresh(keys=[self.key], args=[self.token, self.ttl_ms]))
        if not ok:
            self.lost = True
        return ok

    def release(self) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        return bool(self._release(keys=[self.key], args=[self.token]))

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value or None

    def start_refresher(self) -> None:
        """Extend the TTL every third of it from a daemon thread, until ``release()``."""

        def loop() -> None:
            while not self._stop.wait(self.ttl_ms / 3000):
                try:
                    if not self.refresh():
                        logger.warning("lock %s lost (expired or taken over)", self.key)
                        return
                except redis.RedisError:
                    logger.exception("lock %s refresh failed", self.key)

        self._thread = threading.Thread(target=loop, name=f"lock-refresh:{self.key}", daemon=True)
        self._thread.start()


@contextmanager
def hold_lock(key: str, ttl_seconds: float = 60.0, refresh: bool = True) -> Iterator[RedisLock]:
    """Hold ``key`` for the block (refreshed in the background), or raise ``LockNotAcquired``."""
    lock = RedisLock(key, ttl_seconds)
    if not lock.acquire():
        raise LockNotAcquired(key)
    if refresh:
        lock.start_refresher()
    try:
        yield lock
    finally:
        try:
            lock.release()
        except redis.RedisError:
            logger.exception("lock %s release failed; it expires by itself", key)
