"""manage.py restore_certificates FILE: restore an encrypted backup; existing rows are kept, missing ones added."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from certificates.backup import PASSPHRASE_ENV, BackupError, read_passphrase, restore_backup


class Command(BaseCommand):
    help = ("Restore a backup written by export_certificates into this database, in one transaction. Rows that "
            "already exist (same name; versions by fingerprint) are left alone, so running it twice is harmless.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--passphrase-file", help=f"file whose first line is the passphrase "
                                                      f"(default: ${PASSPHRASE_ENV})")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = restore_backup(options["file"], read_passphrase(options["passphrase_file"]))
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        self.stdout.write("created " + ", ".join(f"{v} {k}" for k, v in result.created.items())
                          + "; already present " + ", ".join(f"{v} {k}" for k, v in result.existing.items()))
