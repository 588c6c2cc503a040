"""Issue, rotate or revoke the HTTP intake token of one Gateway instance (the token is printed once)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from logpipeline.http import hash_token, new_token
from logpipeline.models import IntakeSource


class Command(BaseCommand):
    help = "Issue (or rotate) the bearer token a Gateway's log shipper uses on POST /logs/ingest; --revoke to stop it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("instance", help="the Gateway instance id its events are tagged with")
        parser.add_argument("--revoke", action="store_true", help="disable the instance's token")

    def handle(self, *args: Any, **options: Any) -> None:
        instance = options["instance"].strip()
        if not instance or len(instance) > 128:
            raise CommandError("instance must be 1 to 128 characters")
        if options["revoke"]:
            updated = IntakeSource.objects.filter(instance_id=instance, kind="http").update(
                enabled=False, token_sha256="")
            if not updated:
                raise CommandError(f"no HTTP intake source for {instance!r}")
            self.stdout.write(f"revoked the HTTP intake token of {instance}")
            return
        token = new_token()
        IntakeSource.objects.update_or_create(instance_id=instance, kind="http",
                                              defaults={"token_sha256": hash_token(token), "enabled": True})
        self.stderr.write(f"HTTP intake token for {instance} (shown once; the previous one no longer works):")
        self.stdout.write(token)
