"""Fixtures for a real nginx peer (see tests/peers/__init__.py)."""
