"""Check the audit trail's hash chain; exit non-zero naming the first broken link."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.services import verify_chain


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain and name the first broken link."

    def handle(self, *args: Any, **options: Any) -> None:
        checked, broken = verify_chain()
        if broken is not None:
            raise CommandError(f"audit chain broken at {broken} ({checked} event(s) checked up to it)")
        self.stdout.write(self.style.SUCCESS(f"audit chain intact: {checked} event(s) verified"))
