"""Create the waf-author, waf-approver and waf-deployer groups with their permissions (idempotent)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from waf_config.services.roles import ROLES, ensure_roles


class Command(BaseCommand):
    help = "Create or complete the WAF role groups (author, approver, deployer)."

    def handle(self, *args: Any, **opts: Any) -> None:
        ensure_roles()
        for name, perms in ROLES.items():
            self.stdout.write(f"{name}: {', '.join(perms)}")
