"""manage.py gateway_group [NAME [--description TEXT]]: list Gateway groups, or create one."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateways.models import GatewayGroup
from gateways.services import GroupError, create_group


class Command(BaseCommand):
    help = "List Gateway groups, or create NAME (with the current desired state of every resource type built for it)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", nargs="?")
        parser.add_argument("--description", default="")

    def handle(self, *args: Any, **opts: Any) -> None:
        if not opts["name"]:
            for g in GatewayGroup.objects.all():
                self.stdout.write(f"{g.name}\t{g.credentials.filter(revoked_at__isnull=True).count()} credentials\t"
                                  f"{g.description}")
            return
        try:
            group = create_group(opts["name"], opts["description"], actor="gateway_group")
        except GroupError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"created group {group.name}")
