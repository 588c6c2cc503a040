"""``python -m worker_project.preflight``: what scripts/up checks before it migrates or starts anything.

Redis (REDIS_URL) and the database (DATABASE_URL) must answer; each that does not gets one line naming it and
how to fix it, and the exit status is 1. A PostgreSQL database that does not exist yet is created. Reads the
same variables and defaults as the settings, without loading Django, and never prints a password.
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
from pathlib import Path

import psycopg2
import redis
from psycopg2 import sql

from worker_project.env import ImproperlyConfiguredEnv, parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
TIMEOUT_SECONDS = 3


def redact(url: str) -> str:
    """``url`` without its password: ``postgres://user:***@host/db``."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else exc.__class__.__name__


def redis_problem(url: str) -> str | None:
    client = redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS)
    try:
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        return (f"Redis at {redact(url)} is unreachable ({_first_line(exc)}): start it, or set REDIS_URL to "
                "one that answers")
    finally:
        client.close()
    return None


def database_problem(url: str) -> str | None:
    try:
        config = parse_database_url(url, BASE_DIR)
    except ImproperlyConfiguredEnv as exc:
        return str(exc)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        return _sqlite_problem(Path(str(config["NAME"])))
    return _postgres_problem(config, url)


def _sqlite_problem(path: Path) -> str | None:
    try:
        with sqlite3.connect(path, timeout=TIMEOUT_SECONDS) as db:
            db.execute("SELECT 1")
    except sqlite3.Error as exc:
        return (f"SQLite database {path} cannot be opened ({_first_line(exc)}): create its directory, or set "
                "DATABASE_URL")
    return None


def _postgres_problem(config: dict[str, object], url: str) -> str | None:
    """Connects to the server's ``postgres`` database and creates ``config["NAME"]`` when it is missing."""
    name = str(config["NAME"])
    where = f"{config['HOST'] or 'localhost'}:{config['PORT'] or 5432}"
    try:
        conn = psycopg2.connect(dbname="postgres", user=config["USER"], password=config["PASSWORD"],
                                host=config["HOST"], port=config["PORT"] or 5432, connect_timeout=TIMEOUT_SECONDS)
    except psycopg2.Error as exc:
        return (f"PostgreSQL at {where} is unreachable ({_first_line(exc)}): start it, or set DATABASE_URL "
                f"(now {redact(url)}) to a server that answers")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"created database {name}", file=sys.stderr)
    except psycopg2.Error as exc:
        return f"PostgreSQL at {where} answers but database {name} cannot be created ({_first_line(exc)})"
    finally:
        conn.close()
    return None


def problems(redis_url: str, database_url: str) -> list[str]:
    return [p for p in (redis_problem(redis_url), database_problem(database_url)) if p]


def main() -> int:
    found = problems(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
                     os.environ.get("DATABASE_URL") or "sqlite:///var/db.sqlite3")
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
