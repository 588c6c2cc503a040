"""Small pieces every service module uses: who acts, refusals."""

from __future__ import annotations

from typing import Any

from audit.services import Actor


class WafError(Exception):
    """A refused operation; the message says exactly why. Nothing was changed."""


class NotPermitted(WafError):
    """The person lacks the role (permission) for this operation."""


def actor_of(who: Any) -> Actor:
    """A user (person) or a name (automation)."""
    if isinstance(who, Actor):
        return who
    if isinstance(who, str):
        return Actor.automation(who)
    return Actor.person(who)


def require_perm(who: Any, perm: str, what: str) -> None:
    """People need the role's permission; automation (a name) is trusted code."""
    if isinstance(who, str | Actor):
        return
    if who is None or not getattr(who, "is_authenticated", False):
        raise NotPermitted(f"{what} needs an authenticated user")
    if not who.has_perm(perm):
        raise NotPermitted(f"{who.get_username()} lacks the permission {perm!r} to {what}")
