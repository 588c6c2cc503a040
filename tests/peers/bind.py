"""Fixtures for a real bind peer (see tests/peers/__init__.py)."""
