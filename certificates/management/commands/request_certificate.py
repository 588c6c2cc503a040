"""manage.py request_certificate NAME... --group G --issuer ACCOUNT --user U --justification WHY

Files a certificate request through the same service as admin and the API: the group's policy is checked, the
pre-flight runs, and the request waits for a second person (``manage.py decide_approval``) unless the policy
approves it automatically."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from certificates.models import AcmeAccount, ChallengeType, DnsUpdateServer, KeyType
from certificates.services import requests as request_service


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("domains", nargs="+")
        parser.add_argument("--group", required=True, help="Gateway group name")
        parser.add_argument("--issuer", required=True, help="ACME account name")
        parser.add_argument("--user", required=True, help="who asks (a username)")
        parser.add_argument("--justification", required=True)
        parser.add_argument("--key-type", default=KeyType.EC256, choices=KeyType.values)
        parser.add_argument("--challenge", default=ChallengeType.HTTP_01, choices=ChallengeType.values)
        parser.add_argument("--dns-server", help="DNS update server name (dns-01)")

    def handle(self, *args: Any, **options: Any) -> None:
        from certificates.services.seams import GatewayGroup

        try:
            user = get_user_model().objects.get(username=options["user"])
            group = GatewayGroup.objects.get(name=options["group"])
            issuer = AcmeAccount.objects.get(name=options["issuer"])
            dns_server = (DnsUpdateServer.objects.get(name=options["dns_server"]) if options["dns_server"]
                          else None)
        except (GatewayGroup.DoesNotExist, AcmeAccount.DoesNotExist, DnsUpdateServer.DoesNotExist) as exc:
            raise CommandError(str(exc)) from exc
        except get_user_model().DoesNotExist as exc:
            raise CommandError(f"no user {options['user']!r}") from exc
        try:
            request = request_service.file_request(
                domains=options["domains"], group=group, issuer=issuer, requested_by=user,
                justification=options["justification"], key_type=options["key_type"],
                challenge_type=options["challenge"], dns_server=dns_server)
        except request_service.RequestRefused as exc:
            raise CommandError(f"refused: {exc}") from exc
        self.stdout.write(request_service.describe(request) + (f" ({request.error})" if request.error else ""))
        approval = request_service.approval_for(request)
        if approval is not None:
            self.stdout.write(f"approval request {approval.pk}: manage.py decide_approval {approval.pk} "
                              "--user APPROVER --approve")
