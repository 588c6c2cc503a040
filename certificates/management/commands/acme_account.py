"""Create or update an ACME account (an issuer): `manage.py acme_account NAME --directory URL ...`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from certificates.acme_client import AcmeClient, AcmeError
from certificates.cli import checked_instance, read_file, read_pem_file
from certificates.forms import AcmeAccountForm
from certificates.models import AcmeAccount
from certificates.services import catalog


class Command(BaseCommand):
    help = "Create or update an ACME account; --register contacts the CA now (else on the first order)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--directory", required=True, help="the ACME directory URL")
        parser.add_argument("--email", default="", help="contact address sent to the CA")
        parser.add_argument("--ca-bundle", default="", help="PEM file trusted for the directory's HTTPS")
        parser.add_argument("--trust-roots", default="",
                            help="PEM file of the roots issued chains must build to (default: CERT_TRUST_STORE)")
        parser.add_argument("--eab-kid", default="", help="External Account Binding key id")
        parser.add_argument("--eab-hmac-key-file", default="", help="file holding the EAB HMAC key (base64url)")
        parser.add_argument("--profile", default="", help="default certificate profile, if the CA offers profiles")
        parser.add_argument("--register", action="store_true", help="register with the CA now")

    def handle(self, *args: Any, **opts: Any) -> None:
        instance = AcmeAccount.objects.filter(name=opts["name"]).first()
        roots = read_pem_file(opts["trust_roots"], "--trust-roots", "the roots issued chains build to")
        data = {
            "name": opts["name"], "directory_url": opts["directory"], "contact_email": opts["email"],
            "tls_ca_bundle": opts["ca_bundle"], "trust_roots_pem": roots,
            "eab_kid": opts["eab_kid"], "profile": opts["profile"],
            "new_eab_hmac_key": read_file(opts["eab_hmac_key_file"], "EAB HMAC key"),
        }
        account = checked_instance(AcmeAccountForm(data=data, instance=instance), "ACME account")
        catalog.save_acme_account(account, actor="manage.py acme_account")
        self.stdout.write(f"{'updated' if instance else 'created'} ACME account {account.name} "
                          f"({account.directory_url})")
        if opts["register"]:
            try:
                url = AcmeClient.connect(account).ensure_registered()
            except AcmeError as exc:
                raise CommandError(f"registration with {account.directory_url} failed: {exc}") from exc
            self.stdout.write(f"registered: {url}")
