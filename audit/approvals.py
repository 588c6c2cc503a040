"""Four eyes for any app: request an approval, and let someone other than the requester decide it.

The rule lives here, not in a form: ``approve`` and ``reject`` refuse a decision by the requester, by an anonymous
user or by someone without the request's permission, whatever calls them (admin, a command, the API). Every step
is in the audit trail, inside the same transaction as the decision.

An app that needs approvals:

- files one with ``request_approval(subject, action, requested_by, justification, permission=...)`` (the open
  request for the same subject and action is returned instead of a second one);
- registers, once (in its ``AppConfig.ready``), what a decision does to its subject:
  ``register_decision_handler(action, handler)``. ``handler(request, decision)`` runs inside the deciding
  transaction before anything is committed; raising ``ApprovalError`` there refuses the decision (e.g. "the
  version's author cannot approve it", "validation has not passed") and leaves everything as it was;
- decides through ``approve(request, user, comment)`` / ``reject(request, user, comment)``.

This module imports no other app: subjects are referenced by model label and primary key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.apps import apps
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from audit.models import ApprovalRequest, ApprovalState
from audit.services import Actor, record_event

DecisionHandler = Callable[[ApprovalRequest, str], None]

_handlers: dict[str, DecisionHandler] = {}


class ApprovalError(Exception):
    """A decision or request that is refused; the message says why. Nothing was changed."""


def register_decision_handler(action: str, handler: DecisionHandler) -> None:
    _handlers[action] = handler


def subject_of(request: ApprovalRequest) -> Model | None:
    """The subject row (None if it was deleted)."""
    model = apps.get_model(request.subject_type)
    return model._default_manager.filter(pk=request.subject_id).first()


def _actor(who: Any) -> Actor:
    if isinstance(who, str):
        return Actor.automation(who)
    return Actor.person(who)


def pending_for(subject: Model, action: str) -> ApprovalRequest | None:
    return ApprovalRequest.objects.filter(subject_type=subject._meta.label_lower, subject_id=str(subject.pk),
                                          action=action, state=ApprovalState.PENDING).first()


def request_approval(subject: Model, action: str, requested_by: Any, justification: str = "", *,
                     permission: str = "", summary: str = "") -> ApprovalRequest:
    """File a request (a person: a user; automation: its name). Returns the open one if there is one already."""
    actor = _actor(requested_by)
    with transaction.atomic():
        existing = pending_for(subject, action)
        if existing is not None:
            return existing
        request = ApprovalRequest.objects.create(
            subject_type=subject._meta.label_lower, subject_id=str(subject.pk), action=action[:100],
            permission=permission, summary=(summary or str(subject))[:500],
            requested_by=None if isinstance(requested_by, str) else requested_by,
            requested_by_name=actor.name, justification=justification,
        )
        record_event(actor, "approval.requested", obj=request,
                     after={"action": action, "subject": f"{request.subject_type}:{request.subject_id}",
                            "justification": justification[:500]},
                     summary=f"approval requested: {action} for {request.summary}"[:500])
    return request


def _decide(request: ApprovalRequest, user: Any, comment: str, decision: str) -> ApprovalRequest:
    if user is None or not getattr(user, "is_authenticated", False):
        raise ApprovalError("a decision needs an authenticated person")
    with transaction.atomic():
        locked = ApprovalRequest.objects.select_for_update().get(pk=request.pk)
        if locked.state != ApprovalState.PENDING:
            raise ApprovalError(f"this request was already {locked.state} by "
                                f"{locked.decided_by.get_username() if locked.decided_by else 'someone'}")
        if locked.requested_by_id is not None and locked.requested_by_id == user.pk:
            raise ApprovalError(f"{user.get_username()} requested this and cannot {decision[:-1]} it: "
                                "a second person must decide")
        if locked.permission and not user.has_perm(locked.permission):
            raise ApprovalError(f"{user.get_username()} lacks the permission {locked.permission!r} to decide this")
        if decision == ApprovalState.REJECTED and not comment.strip():
            raise ApprovalError("a rejection needs a comment saying why")
        locked.state = decision
        locked.decided_by = user
        locked.comment = comment
        locked.decided_at = timezone.now()
        locked.save(update_fields=["state", "decided_by", "comment", "decided_at"])
        handler = _handlers.get(locked.action)
        if handler is not None:
            handler(locked, decision)  # may raise ApprovalError: the whole decision is rolled back
        record_event(Actor.person(user), f"approval.{decision}", obj=locked,
                     before={"state": ApprovalState.PENDING},
                     after={"state": decision, "comment": comment[:500], "action": locked.action,
                            "subject": f"{locked.subject_type}:{locked.subject_id}"},
                     summary=f"{decision}: {locked.action} for {locked.summary}"[:500])
    request.refresh_from_db()
    return request


def approve(request: ApprovalRequest, user: Any, comment: str = "") -> ApprovalRequest:
    """Approve (not by the requester; needs the request's permission). Raises ApprovalError when refused."""
    return _decide(request, user, comment, ApprovalState.APPROVED)


def reject(request: ApprovalRequest, user: Any, comment: str) -> ApprovalRequest:
    """Reject with a comment (not by the requester). Raises ApprovalError when refused."""
    return _decide(request, user, comment, ApprovalState.REJECTED)
