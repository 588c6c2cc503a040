"""Approve or reject an approval request from the shell, as a named person: `manage.py decide_approval ID --user
bob --approve --comment "…"`. The same service as admin and the API: the requester is refused."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import approvals
from audit.models import ApprovalRequest


class Command(BaseCommand):
    help = "Approve or reject an approval request (or list the pending ones without an id)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("request_id", nargs="?", type=int)
        parser.add_argument("--user", help="the deciding person's username")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--approve", action="store_true")
        group.add_argument("--reject", action="store_true")
        parser.add_argument("--comment", default="")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["request_id"] is None:
            for r in ApprovalRequest.objects.filter(state="pending").order_by("created_at"):
                self.stdout.write(f"{r.pk:6} {r.action:32} {r.requested_by_name:16} {r.summary}")
            return
        if not (opts["approve"] or opts["reject"]) or not opts["user"]:
            raise CommandError("give --user and one of --approve / --reject")
        user = get_user_model().objects.filter(username=opts["user"]).first()
        if user is None:
            raise CommandError(f"no user {opts['user']!r}")
        request = ApprovalRequest.objects.filter(pk=opts["request_id"]).first()
        if request is None:
            raise CommandError(f"no approval request {opts['request_id']}")
        try:
            if opts["approve"]:
                request = approvals.approve(request, user, opts["comment"])
            else:
                request = approvals.reject(request, user, opts["comment"])
        except approvals.ApprovalError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"request {request.pk}: {request.state} by {user.get_username()}")
