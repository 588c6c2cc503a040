"""import_certificates from a Gateway certificate directory, and the encrypted export/restore round trip."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.models import AuditEvent
from certificates import x509
from certificates.backup import BackupError, build_payload, restore_payload
from certificates.models import (
    AcmeAccount,
    Certificate,
    CertificateIssuer,
    CertificateState,
    CertificateVersion,
    DnsUpdateServer,
    VersionSource,
)
from certificates.services import policy
from gateways.models import GatewayGroup
from tests.certificates_support import pushes, served_serials

PASSPHRASE = "correct horse battery staple"


class TinyCA:
    """A root and an intermediate issuing leaves with an AKI (so they have an ARI id), like a real CA."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "Tiny Intermediate")])
        now = timezone.now()
        self.cert = (
            cx509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
            .public_key(self.key.public_key()).serial_number(cx509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(cx509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = x509.certificate_pem(self.cert)

    def issue(self, domains: list[str], key_pem: str, days: int = 90, start: dt.datetime | None = None) -> str:
        key = x509.load_private_key(key_pem)
        start = start or timezone.now() - dt.timedelta(hours=1)
        return x509.certificate_pem(
            cx509.CertificateBuilder()
            .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, domains[0])]))
            .issuer_name(self.name).public_key(key.public_key()).serial_number(cx509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .add_extension(cx509.SubjectAlternativeName([cx509.DNSName(d) for d in domains]), critical=False)
            .add_extension(cx509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )


@pytest.fixture
def gateway_dir(tmp_path: Path) -> Path:
    ca = TinyCA()
    d = tmp_path / "certs"
    d.mkdir()
    www_key = x509.generate_private_key("ec256")
    (d / "www.example.com.crt").write_text(ca.issue(["www.example.com", "example.com"], www_key) + ca.pem)
    (d / "www.example.com.key").write_text(www_key)
    wild_key = x509.generate_private_key("rsa2048")
    (d / "*.example.com.crt").write_text(ca.issue(["*.example.com", "example.com"], wild_key))
    (d / "*.example.com.key").write_text(wild_key)
    (d / "*.example.com.chain.pem").write_text(ca.pem)
    old_key = x509.generate_private_key("ec384")
    (d / "old.example.com.crt").write_text(
        ca.issue(["old.example.com"], old_key, days=30, start=timezone.now() - dt.timedelta(days=40)))
    (d / "old.example.com.key").write_text(old_key)
    # bad ones
    (d / "api.example.com.crt").write_text(ca.issue(["api.example.com"], x509.generate_private_key("ec256")))
    (d / "api.example.com.key").write_text(x509.generate_private_key("ec256"))  # does not match
    (d / "broken.example.com.crt").write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    (d / "broken.example.com.key").write_text(x509.generate_private_key("ec256"))
    nokey = x509.generate_private_key("ec256")
    (d / "nokey.example.com.crt").write_text(ca.issue(["nokey.example.com"], nokey))
    wrong_key = x509.generate_private_key("ec256")
    (d / "other.example.com.crt").write_text(ca.issue(["not-other.example.com"], wrong_key))
    (d / "other.example.com.key").write_text(wrong_key)
    return d


@pytest.mark.django_db
def test_import_adopts_good_files_and_reports_bad_ones(gateway_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CommandError, match="4 file"):
        call_command("import_certificates", str(gateway_dir))
    err = capsys.readouterr().err
    lines = {line.split()[1].rstrip(":"): line for line in err.splitlines() if line.startswith("skipped")}
    assert set(lines) == {"api.example.com.crt", "broken.example.com.crt", "nokey.example.com.crt",
                          "other.example.com.crt"}
    for name, reason in [("api.example.com.crt", "does not match"), ("broken.example.com.crt", "not a readable PEM"),
                         ("nokey.example.com.crt", "no private key"), ("other.example.com.crt", "does not cover")]:
        assert reason in lines[name]
    assert ".chain.pem" not in err  # never taken as a leaf
    assert sorted(Certificate.objects.values_list("name", flat=True)) == [
        "old-example-com", "wildcard-example-com", "www-example-com"]

    www = Certificate.objects.get(name="www-example-com")
    version = www.current_version
    assert version is not None and version.source == VersionSource.IMPORTED
    assert www.domains == ["www.example.com", "example.com"] and www.common_name == "www.example.com"
    assert www.key_type == "ec256" and www.state == CertificateState.VALID
    assert x509.key_matches_certificate(version.key_pem, version.cert_pem)
    assert version.chain_pem and version.ari_cert_id
    assert www.not_after == version.not_after
    assert www.renew_after == policy.renew_after_for(version.not_before, version.not_after)

    wild = Certificate.objects.get(name="wildcard-example-com")
    assert wild.domains[0] == "*.example.com" and wild.key_type == "rsa2048" and wild.challenge_type == "dns-01"
    assert wild.current_version.chain_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert Certificate.objects.get(name="old-example-com").state == CertificateState.EXPIRED
    assert AuditEvent.objects.filter(action="certificate.imported").count() == 3

    # idempotent: a second run adds nothing
    with pytest.raises(CommandError):
        call_command("import_certificates", str(gateway_dir))
    assert "3 unchanged" in capsys.readouterr().out
    assert CertificateVersion.objects.count() == 3
    assert AuditEvent.objects.filter(action="certificate.imported").count() == 3


@pytest.mark.django_db
def test_import_missing_directory() -> None:
    with pytest.raises(CommandError, match="not a directory"):
        call_command("import_certificates", "/nonexistent/dir")


def _populate(gateway_dir: Path) -> None:
    """Every field away from its default, so a restore that drops one shows in the snapshot."""
    for name in ("api", "broken", "nokey", "other"):
        for suffix in (".crt", ".key"):
            (gateway_dir / f"{name}.example.com{suffix}").unlink(missing_ok=True)
    call_command("import_certificates", str(gateway_dir))
    account = AcmeAccount.objects.create(name="pebble", directory_url="https://127.0.0.1:14000/dir",
                                         contact_email="ops@example.test", key_pem=x509.generate_private_key("ec256"),
                                         account_url="https://127.0.0.1:14000/my-account/1", eab_kid="kid-1",
                                         eab_hmac_key="c2VjcmV0", tls_ca_bundle="/etc/pebble.pem",
                                         trust_roots_pem=TinyCA().pem, profile="shortlived", terms_agreed=True)
    AcmeAccount.objects.create(name="backup-ca", directory_url="https://127.0.0.2/dir",
                               key_pem=x509.generate_private_key("ec256"))
    bind = DnsUpdateServer.objects.create(name="bind", server="127.0.0.1", port=5353, zone="example.com",
                                          tsig_key_name="k", tsig_algorithm="hmac-sha512",
                                          tsig_secret="c2VjcmV0c2VjcmV0", propagation_timeout_seconds=33)
    edge = GatewayGroup.objects.create(name="edge")
    www = Certificate.objects.get(name="www-example-com")
    Certificate.objects.filter(pk=www.pk).update(gateway_group=edge, profile="tlsserver", key_type="ec384")
    Certificate.objects.filter(name="wildcard-example-com").update(dns_server=bind, auto_renew=False)
    CertificateIssuer.objects.create(certificate=www, account=account, priority=0)
    CertificateIssuer.objects.create(certificate=www, account=AcmeAccount.objects.get(name="backup-ca"), priority=3)
    # a temporary version too, which must stay temporary after a restore
    cert_pem, key_pem = x509.make_temporary_certificate(www.domains, "ec256", 7)
    info = x509.certificate_info(cert_pem)
    CertificateVersion.objects.create(
        certificate=www, source=VersionSource.TEMPORARY, serial_hex=info.serial_hex,
        fingerprint_sha256=info.fingerprint_sha256, subject=info.subject, issuer_dn=info.issuer_dn,
        domains=info.domains, not_before=info.not_before, not_after=info.not_after, cert_pem=cert_pem,
        key_pem=key_pem, key_type="ec256", account=account, retired_at=timezone.now(), revoked_at=timezone.now(),
        revocation_reason="superseded")


# Not in a backup, by design: database ids and row timestamps, and what is learned again (ari_offered: from the
# directory on the next order). Everything else must come back exactly.
NOT_RESTORED = {"id", "updated_at", "ari_offered", "certificate.created_at", "acmeaccount.created_at"}


def _natural(obj: object) -> object:
    if isinstance(obj, CertificateVersion):
        return obj.fingerprint_sha256
    return getattr(obj, "name", None) or getattr(obj, "order_url", None) or repr(obj)


def _row(obj: Any) -> dict[str, object]:
    model = obj._meta.model_name
    out: dict[str, object] = {}
    for f in obj._meta.concrete_fields:
        if f.name in NOT_RESTORED or f"{model}.{f.name}" in NOT_RESTORED:
            continue
        value = getattr(obj, f.name)
        out[f.name] = _natural(value) if f.is_relation and value is not None else value
    return out


def _snapshot() -> dict[str, object]:
    """Every column of every backed-up row, keyed by natural keys (foreign keys by name or fingerprint)."""
    return {
        "accounts": {a.name: _row(a) for a in AcmeAccount.objects.all()},
        "dns": {d.name: _row(d) for d in DnsUpdateServer.objects.all()},
        "certs": {c.name: _row(c) for c in Certificate.objects.all()},
        "issuers": {(i.certificate.name, i.account.name): _row(i) for i in CertificateIssuer.objects.all()},
        "versions": {v.fingerprint_sha256: _row(v) for v in CertificateVersion.objects.all()},
    }


def _wipe() -> None:
    Certificate.objects.update(current_version=None)
    CertificateVersion.objects.all().delete()
    CertificateIssuer.objects.all().delete()
    Certificate.objects.all().delete()
    AcmeAccount.objects.all().delete()
    DnsUpdateServer.objects.all().delete()


@pytest.mark.django_db
def test_export_wipe_restore_round_trip(gateway_dir: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _populate(gateway_dir)
    before = _snapshot()
    assert len(before["versions"]) == 4  # type: ignore[arg-type]
    backup = tmp_path / "backup.gwbak"
    monkeypatch.setenv("GATEWAY_WORKER_BACKUP_PASSPHRASE", PASSPHRASE)
    call_command("export_certificates", "--output", str(backup), *approved_export())
    assert backup.stat().st_mode & 0o777 == 0o600
    raw = backup.read_text()
    # sealed: no key material, no names in clear
    for needle in ("PRIVATE KEY", "www-example-com", "c2VjcmV0c2VjcmV0", "BEGIN CERTIFICATE"):
        assert needle not in raw
    assert json.loads(raw)["format"] == "gateway-worker-certificates-backup"

    _wipe()
    call_command("restore_certificates", str(backup))
    assert _snapshot() == before
    for version in CertificateVersion.objects.all():
        assert x509.key_matches_certificate(version.key_pem, version.cert_pem)
    assert CertificateVersion.objects.filter(source=VersionSource.TEMPORARY).count() == 1
    assert AuditEvent.objects.filter(action="certificates.restored").count() == 1

    # idempotent: again on the full database changes nothing
    call_command("restore_certificates", str(backup))
    assert _snapshot() == before

    # partly filled: one certificate lost -> only it comes back
    www = Certificate.objects.get(name="old-example-com")
    www.current_version = None
    www.save()
    CertificateVersion.objects.filter(certificate=www).delete()
    www.delete()
    call_command("restore_certificates", str(backup))
    assert _snapshot() == before


@pytest.mark.django_db
def test_wrong_passphrase_or_tampering_changes_nothing(gateway_dir: Path, tmp_path: Path) -> None:
    _populate(gateway_dir)
    passfile = tmp_path / "pass"
    passfile.write_text(PASSPHRASE + "\n")
    backup = tmp_path / "b.gwbak"
    call_command("export_certificates", "-o", str(backup), "--passphrase-file", str(passfile), *approved_export())
    _forget("old-example-com")  # a restore that got anywhere would bring it back
    before, events = _snapshot(), AuditEvent.objects.count()
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase at all")
    with pytest.raises(CommandError, match="wrong passphrase"):
        call_command("restore_certificates", str(backup), "--passphrase-file", str(wrong))
    original = json.loads(backup.read_text())
    ciphertext = base64.b64decode(original["ciphertext"])
    flipped = ciphertext[:100] + bytes([ciphertext[100] ^ 1]) + ciphertext[101:]
    for change in ({"ciphertext": base64.b64encode(flipped).decode()},
                   {"version": 1, "kdf": {**original["kdf"], "p": 2}},  # the header is authenticated too
                   {"nonce": base64.b64encode(b"\0" * 12).decode()}):
        tampered = tmp_path / "t.gwbak"
        tampered.write_text(json.dumps({**original, **change}))
        with pytest.raises(CommandError, match="modified"):
            call_command("restore_certificates", str(tampered), "--passphrase-file", str(passfile))
    (tmp_path / "junk").write_text("hello")
    with pytest.raises(CommandError, match="not a gateway-worker certificate backup"):
        call_command("restore_certificates", str(tmp_path / "junk"), "--passphrase-file", str(passfile))
    assert _snapshot() == before
    assert AuditEvent.objects.count() == events


def _forget(name: str) -> None:
    cert = Certificate.objects.get(name=name)
    Certificate.objects.filter(pk=cert.pk).update(current_version=None)
    CertificateVersion.objects.filter(certificate=cert).delete()
    cert.delete()


@pytest.mark.django_db
def test_an_inconsistent_backup_changes_nothing_on_a_populated_database(
        gateway_dir: Path, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    GatewayGroup.objects.get_or_create(name="default")
    _populate(gateway_dir)
    payload = build_payload()
    _forget("old-example-com")  # restored first (names in order), before the bad version is reached
    bad = json.loads(json.dumps(payload["certificates"][-1]["versions"][0]))
    bad["fingerprint_sha256"] = "0" * 64  # does not match its certificate
    payload["certificates"][-1]["versions"].append(bad)
    before, events, pushed = _snapshot(), AuditEvent.objects.count(), pushes()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(BackupError, match="does not match"):
        restore_payload(payload)
    assert _snapshot() == before
    assert AuditEvent.objects.count() == events and pushes() == pushed, "nothing audited or pushed"


@pytest.mark.django_db
def test_import_applies_the_renewal_policy_and_publishes(
        gateway_dir: Path, settings, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    settings.CERT_RENEW_DAYS_BEFORE = 7
    GatewayGroup.objects.get_or_create(name="default")
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(CommandError):
        call_command("import_certificates", str(gateway_dir))  # the bad files are skipped
    www = Certificate.objects.get(name="www-example-com")
    version = www.current_version
    assert www.renew_after == version.not_after - dt.timedelta(days=7)
    assert AuditEvent.objects.filter(action="certificate.version.activated", object_id=str(www.pk)).exists()
    served = served_serials("default")
    assert served["www-example-com"] == version.serial_hex
    assert set(served) == {"www-example-com", "wildcard-example-com", "old-example-com"}


@pytest.mark.django_db
def test_restore_serves_through_the_versions_service(
        gateway_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    _populate(gateway_dir)
    monkeypatch.setenv("GATEWAY_WORKER_BACKUP_PASSPHRASE", PASSPHRASE)
    backup = tmp_path / "b.gwbak"
    call_command("export_certificates", "--output", str(backup), *approved_export())
    _wipe()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("restore_certificates", str(backup))
    assert served_serials("edge") == {c.name: c.current_version.serial_hex for c in Certificate.objects.all()}
    restored = AuditEvent.objects.filter(action="certificate.version.restored")
    assert sorted(e.object_id for e in restored) == sorted(str(c.pk) for c in Certificate.objects.all())


def test_short_or_missing_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_WORKER_BACKUP_PASSPHRASE", raising=False)
    with pytest.raises(CommandError, match="no passphrase"):
        call_command("export_certificates", "-o", str(tmp_path / "x"))
    monkeypatch.setenv("GATEWAY_WORKER_BACKUP_PASSPHRASE", "short")
    with pytest.raises(CommandError, match="at least 12"):
        call_command("export_certificates", "-o", str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def approved_export() -> list[str]:
    """A key export asked by one person and approved by another: the arguments that use it."""
    from audit.approvals import approve, pending_for
    from certificates.services.changes import request_key_export
    from tests.cert_request_support import people

    who = people()
    change = request_key_export(who.alice, justification="backup drill")
    approve(pending_for(change, "certificates.export_keys"), who.bob, "ok")
    return ["--user", who.alice.username, "--approval", str(change.pk)]


@pytest.mark.django_db
def test_export_without_an_approved_change_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_WORKER_BACKUP_PASSPHRASE", PASSPHRASE)
    with pytest.raises(CommandError, match="second person"):
        call_command("export_certificates", "-o", str(tmp_path / "x"))
    out = io.StringIO()
    from tests.cert_request_support import people

    who = people()
    call_command("export_certificates", "--request", "--user", who.alice.username, "--justification", "drill",
                 stdout=out)
    assert "waits for a second person" in out.getvalue()
    assert not (tmp_path / "x").exists()
