"""Register every app's periodic jobs in django_celery_beat's tables, idempotently (startup runs this)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from worker_project.schedules import sync_schedules


class Command(BaseCommand):
    help = ("Create missing periodic jobs and update their task/queue/expiry from code. A schedule edited in "
            "admin is kept (reported as drift) unless --reset-schedule NAME is given.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reset-schedule", action="append", default=[], metavar="NAME",
                            help="apply the code's schedule to this job even if it was edited (repeatable)")
        parser.add_argument("--dry-run", action="store_true", help="report what would change, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            results = sync_schedules(reset=set(options["reset_schedule"]), dry_run=options["dry_run"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for result in results:
            self.stdout.write(str(result))
        counts: dict[str, int] = {}
        for result in results:
            counts[result.action] = counts.get(result.action, 0) + 1
        summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "no periodic jobs declared"
        prefix = "dry run: " if options["dry_run"] else ""
        self.stdout.write(self.style.SUCCESS(f"{prefix}schedules: {summary}"))
