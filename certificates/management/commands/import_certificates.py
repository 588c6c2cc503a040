"""manage.py import_certificates DIR: adopt the certificates in a Gateway certificate directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from certificates.importing import ImportFileError, import_directory


class Command(BaseCommand):
    help = ("Adopt existing certificates from a Gateway certificate directory (<domain>.crt, <domain>.key, "
            "optional <domain>.chain.pem). Bad files are reported and skipped; re-running is harmless.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = import_directory(options["directory"])
        except ImportFileError as exc:
            raise CommandError(str(exc)) from exc
        for name in result.imported:
            self.stdout.write(f"imported  {name}")
        for name in result.unchanged:
            self.stdout.write(f"unchanged {name}")
        for file_name, reason in result.errors:
            self.stderr.write(f"skipped   {file_name}: {reason}")
        self.stdout.write(f"{len(result.imported)} imported, {len(result.unchanged)} unchanged, "
                          f"{len(result.errors)} skipped")
        if result.errors:
            raise CommandError(f"{len(result.errors)} file(s) could not be imported (see above)")
