"""Trust files of an ACME account: an empty or non-PEM file is refused by name (an empty --trust-roots used to
mean "the default trust store" silently, e.g. after a `curl > roots.pem` that ran before Pebble listened)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from certificates.models import AcmeAccount
from tests.push_support import self_signed_pem

pytestmark = pytest.mark.django_db

DIRECTORY = "https://127.0.0.1:14000/dir"


def acme_account(*args: str) -> str:
    out = io.StringIO()
    call_command("acme_account", "pebble", "--directory", DIRECTORY, *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "roots.pem"
    path.write_text(self_signed_pem(["root.example.test"])[0])
    return path


@pytest.mark.parametrize("option", ["--trust-roots", "--ca-bundle"])
@pytest.mark.parametrize("content, problem", [
    ("", "it is empty"),
    ("404 page not found\n", "it holds no readable PEM certificates"),
])
def test_an_empty_or_non_pem_file_is_refused_by_name(tmp_path: Path, option: str, content: str,
                                                     problem: str) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text(content)
    with pytest.raises(CommandError) as err:
        acme_account(option, str(bad))
    assert str(bad) in str(err.value) and problem in str(err.value)
    assert not AcmeAccount.objects.exists()


def test_a_missing_ca_bundle_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"tls_ca_bundle: .*nope\.pem: it cannot be read"):
        acme_account("--ca-bundle", str(tmp_path / "nope.pem"))


def test_pem_files_are_taken(pem: Path) -> None:
    assert "created ACME account pebble" in acme_account("--trust-roots", str(pem), "--ca-bundle", str(pem))
    account = AcmeAccount.objects.get(name="pebble")
    assert account.trust_roots_pem == pem.read_text().strip() and account.tls_ca_bundle == str(pem)


def test_no_trust_roots_means_the_default_trust_store() -> None:
    acme_account()
    assert AcmeAccount.objects.get(name="pebble").trust_roots_pem == ""


def test_admin_refuses_non_pem_trust_roots_and_keeps_an_empty_field(admin_client, pem: Path) -> None:
    form = {"name": "pebble", "directory_url": DIRECTORY, "contact_email": "", "eab_kid": "",
            "new_eab_hmac_key": "", "tls_ca_bundle": "", "profile": ""}
    page = admin_client.post(reverse("admin:certificates_acmeaccount_add"),
                             {**form, "trust_roots_pem": "-----BEGIN CERTIFICATE-----\nnot base64\n"})
    assert page.status_code == 200 and "holds no readable PEM certificates" in page.content.decode()
    assert not AcmeAccount.objects.exists()

    page = admin_client.post(reverse("admin:certificates_acmeaccount_add"),
                             {**form, "trust_roots_pem": "", "tls_ca_bundle": str(pem)})
    assert page.status_code == 302, page.content.decode()[-2000:]
    assert AcmeAccount.objects.get(name="pebble").trust_roots_pem == ""
