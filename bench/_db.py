"""A benchmark's own PostgreSQL database, made fresh for each run."""

from __future__ import annotations


def recreate_database(url: str) -> None:
    """Drop (disconnecting any leftover sessions) and create the database ``url`` names."""
    import psycopg2
    from psycopg2 import sql

    base, name = url.rsplit("/", 1)
    conn = psycopg2.connect(base + "/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conn.close()
