"""manage.py issue_gateway_cert NAME --group G --out DIR: a client certificate for one Gateway (creates the CA on
first use); --server: the gRPC server's own certificate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateways import pki
from gateways.credentials import MAX_DAYS, NAME_RE, CredentialError, issue_credential
from gateways.models import DEFAULT_GROUP


class Command(BaseCommand):
    help = ("Issue a Gateway client certificate (NAME.crt, NAME.key, ca.crt) for one group, or the gRPC server's "
            "(--server). The certificate decides the Gateway's instance id (NAME) and the only group it may read.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the Gateway's instance id (its certificate's CN)")
        parser.add_argument("--group", default=DEFAULT_GROUP,
                            help=f"the group it belongs to; must exist (default {DEFAULT_GROUP!r})")
        parser.add_argument("--out", default=".", help="directory for NAME.crt, NAME.key and ca.crt")
        parser.add_argument("--days", type=int, default=365, help=f"validity, 1-{MAX_DAYS} days")
        parser.add_argument("--server", action="store_true",
                            help="a server certificate for run_grpc (writes GRPC_TLS_CERT/GRPC_TLS_KEY unless --out)")
        parser.add_argument("--host", action="append", default=[], help="server SAN (repeatable)")

    def handle(self, *args: Any, **opts: Any) -> None:
        name = opts["name"]
        if opts["server"]:
            paths = self._server(name, opts)
        else:
            try:
                result = issue_credential(name, opts["group"], days=opts["days"], actor="issue_gateway_cert")
            except CredentialError as exc:
                raise CommandError(str(exc)) from None
            paths = pki.write_bundle(Path(opts["out"]), name, result.issued, result.ca_pem)
            self.stderr.write(f"Gateway {name} in group {result.credential.group.name}: serial "
                              f"{result.issued.serial}, valid until {result.issued.not_after:%Y-%m-%d}")
        for p in paths:
            self.stdout.write(str(p))

    def _server(self, name: str, opts: dict[str, Any]) -> list[Path]:
        if not NAME_RE.fullmatch(name):
            raise CommandError(f"invalid NAME {name[:64]!r}: letters, digits, '.', '_' and '-' only")
        if not 1 <= opts["days"] <= MAX_DAYS:
            raise CommandError(f"--days must be between 1 and {MAX_DAYS} (got {opts['days']})")
        ca_cert, ca_key = pki.ensure_ca(Path(settings.GRPC_CA_CERT), Path(settings.GRPC_CA_KEY))
        issued = pki.issue(ca_cert, ca_key, name, server=True, hosts=opts["host"] or None, days=opts["days"])
        if opts["out"] == ".":
            cert_path, key_path = Path(settings.GRPC_TLS_CERT), Path(settings.GRPC_TLS_KEY)
            pki.write_private(key_path, issued.key_pem)
            cert_path.write_bytes(issued.cert_pem)
            return [cert_path, key_path]
        return pki.write_bundle(Path(opts["out"]), name, issued, Path(settings.GRPC_CA_CERT).read_bytes())
