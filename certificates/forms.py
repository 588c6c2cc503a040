"""Forms that create and edit accounts, DNS servers and certificates: used by admin and the management
commands alike, so bad input gets the same specific error wherever it comes from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms
from django.utils import timezone

from certificates.acme_client import AcmeError, LocalError, generate_account_key
from certificates.models import AcmeAccount, Certificate, DnsUpdateServer
from certificates.services.issuance import check_domains
from certificates.x509 import CertificateError, load_certificates

PEM_HINT = "PEM certificates (-----BEGIN CERTIFICATE-----)"


def pem_problem(text: str) -> str | None:
    """Why ``text`` is not a bundle of PEM certificates, or None when it is one."""
    if not text.strip():
        return "it is empty"
    try:
        load_certificates(text)
    except CertificateError:
        return f"it holds no readable {PEM_HINT}"
    return None


def pem_file_problem(path: str) -> str | None:
    """Why the file at ``path`` is not a bundle of PEM certificates, or None when it is one."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return f"it cannot be read: {exc}"
    return pem_problem(text)


def _secret_field(help_text: str) -> forms.CharField:
    return forms.CharField(required=False, strip=True, widget=forms.PasswordInput(render_value=False),
                           help_text=help_text + " Leave empty to keep the current one.")


class AcmeAccountForm(forms.ModelForm):
    directory_url = forms.URLField(max_length=500, assume_scheme="https", help_text="the ACME directory URL")
    new_eab_hmac_key = _secret_field("EAB HMAC key (base64url), if the CA requires External Account Binding.")

    class Meta:
        model = AcmeAccount
        fields = ("name", "directory_url", "contact_email", "eab_kid", "tls_ca_bundle", "trust_roots_pem",
                  "profile")

    def clean_tls_ca_bundle(self) -> str:
        path = self.cleaned_data.get("tls_ca_bundle", "").strip()
        if path and (problem := pem_file_problem(path)):
            raise forms.ValidationError(f"{path}: {problem}; expected the PEM certificates trusted for the "
                                        "directory's HTTPS")
        return path

    def clean_trust_roots_pem(self) -> str:
        text = self.cleaned_data.get("trust_roots_pem", "").strip()
        if text and (problem := pem_problem(text)):  # empty: settings.CERT_TRUST_STORE
            raise forms.ValidationError(f"{problem}; paste the PEM roots issued chains build to, or leave it "
                                        "empty for the default trust store")
        return text

    def save(self, commit: bool = True) -> AcmeAccount:
        account = super().save(commit=False)
        if not account.key_pem:
            account.key_pem = generate_account_key()  # created here, never displayed
        if self.cleaned_data.get("new_eab_hmac_key"):
            account.eab_hmac_key = self.cleaned_data["new_eab_hmac_key"]
        if commit:
            account.save()
        return account


class DnsUpdateServerForm(forms.ModelForm):
    new_tsig_secret = _secret_field("TSIG secret (base64, as in named.conf).")

    class Meta:
        model = DnsUpdateServer
        fields = ("name", "server", "port", "zone", "tsig_key_name", "tsig_algorithm", "propagation_timeout_seconds")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not (self.instance.pk and self.instance.tsig_secret) and not data.get("new_tsig_secret"):
            raise forms.ValidationError("a TSIG secret is required")
        return data

    def save(self, commit: bool = True) -> DnsUpdateServer:
        server = super().save(commit=False)
        if self.cleaned_data.get("new_tsig_secret"):
            server.tsig_secret = self.cleaned_data["new_tsig_secret"]
        if commit:
            server.save()
        return server


# which form field a request problem (certificates.services.issuance.check_domains) belongs to
_FIELD_OF_PROBLEM: dict[str, str] = {LocalError.WILDCARD_HTTP01: "challenge_type", LocalError.DNS_CONFIG: "dns_server"}


class CertificateForm(forms.ModelForm):
    """Bad input is refused here with the reason, before any order is placed."""

    class Meta:
        model = Certificate
        fields = ("name", "domains", "key_type", "challenge_type", "dns_server", "gateway_group", "profile",
                  "auto_renew")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        domains = data.get("domains")
        if not isinstance(domains, list) or not domains or not all(isinstance(d, str) for d in domains):
            raise forms.ValidationError({"domains": 'a JSON list of names, e.g. ["example.com", "www.example.com"]'})
        try:
            normalized = check_domains(domains, data.get("challenge_type", ""), bool(data.get("dns_server")))
        except AcmeError as exc:
            raise forms.ValidationError({_FIELD_OF_PROBLEM.get(exc.error_type, "domains"): str(exc)}) from exc
        data["domains"] = normalized
        return data

    def save(self, commit: bool = True) -> Certificate:
        cert = super().save(commit=False)
        cert.common_name = cert.domains[0]
        if cert.renew_after is None:
            cert.renew_after = timezone.now()  # a new certificate is due at once
        if commit:
            cert.save()
        return cert
