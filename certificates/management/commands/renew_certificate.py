"""Renew (or first issue) one certificate now, in this process: `manage.py renew_certificate NAME [--force]`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from certificates.models import Certificate
from certificates.services import renewal
from certificates.services.renewal import RenewalOutcome


class Command(BaseCommand):
    help = ("Run one renewal now and report the outcome. HTTP-01 needs run_grpc and a connected Gateway "
            "(or gateway-agent) serving the tokens. --force skips the due/backoff checks, like admin's 'renew now'. "
            "--enqueue hands it to a Celery worker instead.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--force", action="store_true")
        parser.add_argument("--enqueue", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        cert = Certificate.objects.filter(name=opts["name"]).first()
        if cert is None:
            raise CommandError(f"no certificate {opts['name']!r}")
        if opts["enqueue"]:
            from certificates.tasks import renew_certificate

            result = renew_certificate.delay(cert.pk, force=opts["force"])
            self.stdout.write(f"enqueued renew_certificate({cert.pk}) as task {result.id}")
            return
        outcome = renewal.renew_certificate(cert.pk, force=opts["force"], task_id="manage.py renew_certificate")
        cert.refresh_from_db()
        line = f"{cert.name}: {outcome.outcome}"
        if outcome.version_id:
            serial = cert.current_version.serial_hex if cert.current_version else "?"
            line += f" (version {outcome.version_id}, serial {serial}, expires {cert.not_after:%Y-%m-%d})"
        if outcome.outcome == RenewalOutcome.FAILED:
            raise CommandError(f"{line}: {outcome.error}")
        if outcome.outcome in (RenewalOutcome.NOT_DUE, RenewalOutcome.BACKING_OFF):
            line += " — use --force to renew anyway"
        self.stdout.write(line)
