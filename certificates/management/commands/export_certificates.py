"""manage.py export_certificates --output FILE: an encrypted backup of certificates, keys, accounts, DNS servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from certificates.backup import PASSPHRASE_ENV, BackupError, export_backup, read_passphrase


class Command(BaseCommand):
    help = (f"Write an encrypted (scrypt + AES-256-GCM) backup of every certificate, version, ACME account and "
            f"DNS update server, private keys included. Passphrase from --passphrase-file or ${PASSPHRASE_ENV}.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", type=Path, required=True)
        parser.add_argument("--passphrase-file", help=f"file whose first line is the passphrase "
                                                      f"(default: ${PASSPHRASE_ENV})")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            counts = export_backup(options["output"], read_passphrase(options["passphrase_file"]))
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"wrote {options['output']}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
