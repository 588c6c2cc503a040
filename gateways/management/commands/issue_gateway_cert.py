"""manage.py issue_gateway_cert NAME --out DIR: a client certificate for one Gateway (creates the CA on first use)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from gateways import pki
from gateways.models import GatewayCredential


class Command(BaseCommand):
    help = "Issue a Gateway client certificate (NAME.crt, NAME.key, ca.crt), or the gRPC server's (--server)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--out", default=".", help="directory for NAME.crt, NAME.key and ca.crt")
        parser.add_argument("--days", type=int, default=365)
        parser.add_argument("--server", action="store_true",
                            help="a server certificate for run_grpc (writes GRPC_TLS_CERT/GRPC_TLS_KEY unless --out)")
        parser.add_argument("--host", action="append", default=[], help="server SAN (repeatable)")

    def handle(self, *args: Any, **opts: Any) -> None:
        name = opts["name"]
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", name):
            raise CommandError(f"invalid NAME {name!r}: letters, digits, '.', '_' and '-' only")
        ca_cert, ca_key = pki.ensure_ca(Path(settings.GRPC_CA_CERT), Path(settings.GRPC_CA_KEY))
        ca_pem = Path(settings.GRPC_CA_CERT).read_bytes()
        issued = pki.issue(ca_cert, ca_key, name, server=opts["server"], hosts=opts["host"] or None,
                           days=opts["days"])
        if opts["server"] and opts["out"] == ".":
            cert_path, key_path = Path(settings.GRPC_TLS_CERT), Path(settings.GRPC_TLS_KEY)
            pki._write_private(key_path, issued.key_pem)
            cert_path.write_bytes(issued.cert_pem)
            paths = [cert_path, key_path]
        else:
            paths = pki.write_bundle(Path(opts["out"]), name, issued, ca_pem)
        if not opts["server"]:
            with transaction.atomic():
                GatewayCredential.objects.create(name=name, serial=issued.serial,
                                                 fingerprint_sha256=issued.fingerprint_sha256,
                                                 not_after=issued.not_after)
        for p in paths:
            self.stdout.write(str(p))
