"""What /ready checks: the database answers, every migration is applied, Redis answers."""

from __future__ import annotations

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor


def check_database() -> str | None:
    try:
        connection = connections[DEFAULT_DB_ALIAS]
        connection.ensure_connection()
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:  # noqa: BLE001 - any failure is a reason to answer 503
        return f"database unreachable: {exc.__class__.__name__}: {exc}".strip()
    if pending:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in pending[:5])
        return f"{len(pending)} migration(s) not applied: {names}"
    return None


def check_redis() -> str | None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"redis unreachable: {exc}"
    finally:
        client.close()
    return None


def check_readiness() -> list[str]:
    return [p for p in (check_database(), check_redis()) if p]
