"""Shared fixtures. Tests run against the real PostgreSQL and Redis that scripts/test starts, and real
Pebble, nginx and BIND started per session by the fixtures in tests/peers/."""

pytest_plugins = [
    "tests.peers.nginx", "tests.peers.pebble", "tests.peers.bind", "tests.peers.ari_proxy", "tests.log_support",
]
