"""DNS name rules shared by every app: one wildcard matcher for certificates and for the push plane."""

from __future__ import annotations

from collections.abc import Iterable


def name_covered(requested: str, sans: Iterable[str]) -> bool:
    """Whether SANs cover ``requested``: an exact match, or a SAN ``*.parent`` for exactly one more label
    (``*.a.b`` covers ``x.a.b``, not ``a.b`` nor ``y.x.a.b``). A requested wildcard needs the same wildcard."""
    requested = requested.lower().rstrip(".")
    sans = {s.lower().rstrip(".") for s in sans}
    if requested in sans:
        return True
    if requested.startswith("*."):
        return False
    _, _, parent = requested.partition(".")
    return bool(parent) and f"*.{parent}" in sans
