"""What scripts/up checks before it migrates or starts anything (worker_project.preflight): against closed ports,
the real PostgreSQL and Redis of the suite, and as the command scripts/up runs."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg2
import pytest
from django.conf import settings
from django.db import connection

from tests.test_health import free_port
from worker_project import preflight

ROOT = Path(__file__).resolve().parent.parent


def run_preflight(redis_url: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "worker_project.preflight"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def server_url(dbname: str) -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{dbname}"


def test_a_closed_redis_port_is_one_line_naming_it_without_the_password() -> None:
    port = free_port()
    problem = preflight.redis_problem(f"redis://:hunter2@127.0.0.1:{port}/0")
    assert problem is not None and "\n" not in problem
    assert problem.startswith(f"Redis at redis://:***@127.0.0.1:{port}/0 is unreachable") and "REDIS_URL" in problem
    assert "hunter2" not in problem


def test_a_closed_postgres_port_is_one_line_naming_it_without_the_password() -> None:
    port = free_port()
    problem = preflight.database_problem(f"postgres://postgres:hunter2@127.0.0.1:{port}/gw")
    assert problem is not None and "\n" not in problem
    assert problem.startswith(f"PostgreSQL at 127.0.0.1:{port} is unreachable") and "DATABASE_URL" in problem
    assert "hunter2" not in problem


def test_an_sqlite_file_in_a_missing_directory_is_named(tmp_path: Path) -> None:
    problem = preflight.database_problem(f"sqlite:///{tmp_path}/missing/db.sqlite3")
    assert problem is not None and f"{tmp_path}/missing/db.sqlite3 cannot be opened" in problem
    assert preflight.database_problem(f"sqlite:///{tmp_path}/db.sqlite3") is None


@pytest.mark.django_db
def test_reachable_services_pass_and_a_missing_postgres_database_is_created() -> None:
    name = f"gw_preflight_{uuid.uuid4().hex[:8]}"
    try:
        assert preflight.problems(settings.REDIS_URL, server_url(name)) == []
        psycopg2.connect(server_url(name)).close()  # it exists now
    finally:
        conn = psycopg2.connect(server_url("postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.close()


@pytest.mark.django_db
def test_the_command_prints_one_line_per_unreachable_store_and_exits_1(tmp_path: Path) -> None:
    closed = free_port()
    done = run_preflight(f"redis://127.0.0.1:{closed}/0", f"sqlite:///{tmp_path}/db.sqlite3")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"Redis at redis://127.0.0.1:{closed}/0 is unreachable (Error 111 connecting to 127.0.0.1:{closed}. "
        "Connection refused.): start it, or set REDIS_URL to one that answers"]

    done = run_preflight(settings.REDIS_URL, f"postgres://postgres:secret@127.0.0.1:{closed}/x")
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done.stderr
    assert "PostgreSQL at 127.0.0.1" in done.stderr and "secret" not in done.stderr

    done = run_preflight(settings.REDIS_URL, server_url(connection.settings_dict["NAME"]))
    assert (done.returncode, done.stderr) == (0, "")
