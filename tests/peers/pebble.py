"""Fixtures for a real pebble peer (see tests/peers/__init__.py)."""
