"""manage.py export_certificates --output FILE: an encrypted backup of certificates, keys, accounts, DNS servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from certificates.backup import PASSPHRASE_ENV, BackupError, read_passphrase
from certificates.backup import _check_passphrase_strength as check_passphrase_strength


class Command(BaseCommand):
    help = (f"Write an encrypted (scrypt + AES-256-GCM) backup of every certificate, version, ACME account and "
            f"DNS update server, private keys included. Passphrase from --passphrase-file or ${PASSPHRASE_ENV}.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", type=Path)
        parser.add_argument("--passphrase-file", help=f"file whose first line is the passphrase "
                                                      f"(default: ${PASSPHRASE_ENV})")
        parser.add_argument("--user", help="who exports (private keys leave: a second person must approve)")
        parser.add_argument("--approval", type=int, help="the approved key-export change to use (once)")
        parser.add_argument("--request", action="store_true",
                            help="ask for a key export instead (prints the approval request to decide)")
        parser.add_argument("--justification", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        from django.contrib.auth import get_user_model

        from certificates.models import CertificateChange
        from certificates.services.changes import ChangeRefused, export_with_keys, request_key_export

        def user() -> Any:
            return get_user_model().objects.filter(username=options["user"] or "").first()

        if options["request"]:
            try:
                change = request_key_export(user(), justification=options["justification"])
            except ChangeRefused as exc:
                raise CommandError(str(exc)) from exc
            from certificates.services.seams import approvals

            approval = approvals.pending_for(change, "certificates.export_keys")
            self.stdout.write(f"key export {change.pk} waits for a second person: manage.py decide_approval "
                              f"{approval.pk if approval else '?'} --user APPROVER --approve")
            return
        if options["output"] is None:
            raise CommandError("--output is required")
        try:
            passphrase = read_passphrase(options["passphrase_file"])
            check_passphrase_strength(passphrase)
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        person = user()
        approved = CertificateChange.objects.filter(pk=options["approval"] or 0).first()
        if person is None or approved is None:
            raise CommandError("a backup holds private keys: ask with --request --user U --justification WHY, have "
                               "a second person approve it, then export with --user U --approval ID")
        try:
            counts = export_with_keys(approved, person, options["output"], passphrase)
        except (BackupError, ChangeRefused) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"wrote {options['output']}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
