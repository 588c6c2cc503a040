"""Shared fixtures. Tests run against the real PostgreSQL and Redis that scripts/test starts."""
