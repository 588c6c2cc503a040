"""Declare a certificate to keep issued and renewed: `manage.py add_certificate NAME DOMAIN... --account A`."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from certificates.cli import checked_instance
from certificates.forms import CertificateForm
from certificates.models import AcmeAccount, ChallengeType, DnsUpdateServer, KeyType
from certificates.services import catalog, seams


class Command(BaseCommand):
    help = ("Add a certificate for DOMAIN(s), issued by the given ACME account(s) in order (issuer fallback). "
            "It is due at once: the next scan (or `manage.py renew_certificate NAME`) issues it.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("domains", nargs="+", metavar="DOMAIN", help="the first one is the common name")
        parser.add_argument("--account", action="append", required=True, dest="accounts",
                            help="ACME account name; repeat for fallback issuers, tried in the order given")
        parser.add_argument("--challenge", choices=ChallengeType.values, default=ChallengeType.HTTP_01)
        parser.add_argument("--dns-server", default="", help="DNS update server name (dns-01)")
        parser.add_argument("--key-type", choices=KeyType.values, default=KeyType.EC256)
        parser.add_argument("--group", default="", help="served by this Gateway group only (default: every group)")
        parser.add_argument("--profile", default="")
        parser.add_argument("--no-auto-renew", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        accounts = []
        for name in opts["accounts"]:
            account = AcmeAccount.objects.filter(name=name).first()
            if account is None:
                raise CommandError(f"no ACME account {name!r} (create it with `manage.py acme_account`)")
            accounts.append(account)
        dns_server = None
        if opts["dns_server"]:
            dns_server = DnsUpdateServer.objects.filter(name=opts["dns_server"]).first()
            if dns_server is None:
                raise CommandError(f"no DNS update server {opts['dns_server']!r}")
        group = None
        if opts["group"]:
            group = seams.gateway_group(opts["group"])
            if group is None:
                raise CommandError(f"no Gateway group {opts['group']!r} (a group exists once a Gateway names it)")
        data = {
            "name": opts["name"], "domains": json.dumps(opts["domains"]), "key_type": opts["key_type"],
            "challenge_type": opts["challenge"], "dns_server": dns_server.pk if dns_server else None,
            "gateway_group": group.pk if group else None, "profile": opts["profile"],
            "auto_renew": not opts["no_auto_renew"],
        }
        cert = checked_instance(CertificateForm(data=data), "certificate")
        catalog.save_certificate(cert, actor="manage.py add_certificate", issuers=accounts)
        self.stdout.write(f"added certificate {cert.name} for {', '.join(cert.domains)}; due now "
                          f"(issued by the next scan, or run `manage.py renew_certificate {cert.name}`)")

