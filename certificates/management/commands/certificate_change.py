"""manage.py certificate_change revoke|move|emergency-revoke CERT --user U ...

Risky changes through the same services as admin: ``revoke`` and ``move`` wait for a second person
(``manage.py decide_approval``); ``emergency-revoke`` happens at once with a written reason, audited and notified."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from certificates.models import Certificate
from certificates.services import changes
from certificates.services.seams import approvals


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", choices=["revoke", "move", "emergency-revoke"])
        parser.add_argument("certificate", help="certificate name (its current version for a revocation)")
        parser.add_argument("--user", required=True)
        parser.add_argument("--justification", default="", help="why (revoke, move); the written reason (emergency)")
        parser.add_argument("--reason", default="unspecified", help="revocation reason code")
        parser.add_argument("--group", help="target Gateway group (move)")

    def handle(self, *args: Any, **options: Any) -> None:
        from certificates.services.seams import GatewayGroup

        user = get_user_model().objects.filter(username=options["user"]).first()
        cert = Certificate.objects.select_related("current_version").filter(name=options["certificate"]).first()
        if user is None or cert is None:
            raise CommandError(f"no user {options['user']!r} or no certificate {options['certificate']!r}")
        try:
            if options["kind"] == "move":
                group = GatewayGroup.objects.filter(name=options["group"] or "").first()
                if group is None:
                    raise CommandError(f"no Gateway group {options['group']!r}")
                change = changes.request_move(cert, group, user, justification=options["justification"])
            else:
                if cert.current_version is None:
                    raise CommandError(f"{cert.name} serves no version")
                if options["kind"] == "emergency-revoke":
                    changes.emergency_revoke(cert.current_version, user, reason=options["reason"],
                                             written_reason=options["justification"])
                    self.stdout.write(f"{cert.name}: revoked now (emergency), audited and notified")
                    return
                change = changes.request_revocation(cert.current_version, user, reason=options["reason"],
                                                    justification=options["justification"])
        except changes.ChangeRefused as exc:
            raise CommandError(str(exc)) from exc
        approval = approvals.pending_for(change, changes.ACTIONS[changes.CertificateChangeKind(change.kind)])
        self.stdout.write(f"{change}: waits for a second person: manage.py decide_approval "
                          f"{approval.pk if approval else '?'} --user APPROVER --approve")
