"""Create or update an RFC 2136 server for DNS-01: `manage.py dns_update_server NAME --server ... --zone ...`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from certificates.cli import checked_instance, read_file
from certificates.forms import DnsUpdateServerForm
from certificates.models import DnsUpdateServer
from certificates.services import catalog


class Command(BaseCommand):
    help = "Create or update a DNS server that accepts TSIG-signed dynamic updates (for dns-01)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--server", required=True, help="address of the primary accepting updates")
        parser.add_argument("--port", type=int, default=53)
        parser.add_argument("--zone", required=True)
        parser.add_argument("--tsig-key-name", required=True)
        parser.add_argument("--tsig-algorithm", default="hmac-sha256")
        parser.add_argument("--tsig-secret-file", default="", help="file holding the base64 TSIG secret")
        parser.add_argument("--propagation-timeout", type=int, default=120, help="seconds")

    def handle(self, *args: Any, **opts: Any) -> None:
        instance = DnsUpdateServer.objects.filter(name=opts["name"]).first()
        data = {
            "name": opts["name"], "server": opts["server"], "port": opts["port"], "zone": opts["zone"],
            "tsig_key_name": opts["tsig_key_name"], "tsig_algorithm": opts["tsig_algorithm"],
            "propagation_timeout_seconds": opts["propagation_timeout"],
            "new_tsig_secret": read_file(opts["tsig_secret_file"], "TSIG secret"),
        }
        server = checked_instance(DnsUpdateServerForm(data=data, instance=instance), "DNS update server")
        catalog.save_dns_server(server, actor="manage.py dns_update_server")
        self.stdout.write(f"{'updated' if instance else 'created'} DNS update server {server}")
