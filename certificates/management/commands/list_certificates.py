"""What is served and until when: `manage.py list_certificates`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from certificates.models import Certificate


class Command(BaseCommand):
    help = "List certificates with state, expiry, days left, next renewal and the last error."

    def handle(self, *args: Any, **opts: Any) -> None:
        now = timezone.now()
        rows = Certificate.objects.select_related("current_version").order_by("not_after", "name")
        header = f"{'name':32} {'state':10} {'expires':17} {'days':>5} {'renew after':17}"
        self.stdout.write(f"{header} domains / last error")
        for c in rows:
            days = c.days_left(now)
            expires = f"{c.not_after:%Y-%m-%d %H:%M}" if c.not_after else "-"
            renew = f"{c.renew_after:%Y-%m-%d %H:%M}" if c.renew_after else "-"
            tail = ", ".join(c.domains) + (f"  [{c.last_error[:80]}]" if c.last_error else "")
            self.stdout.write(f"{c.name:32} {c.state:10} {expires:17} {'-' if days is None else days:>5} {renew:17} "
                              f"{tail}")
