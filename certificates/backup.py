"""Encrypted backup of every ACME account, DNS update server, certificate and version (private keys included),
and its idempotent restore.

File format (JSON envelope, the payload gzip-compressed then sealed with AES-256-GCM)::

    {"format": "gateway-worker-certificates-backup", "version": 1,
     "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": b64},
     "cipher": "AES-256-GCM", "nonce": b64, "ciphertext": b64}

The key is scrypt(passphrase, salt); everything but the ciphertext is authenticated as associated data, so a
wrong passphrase or any edit fails before a row is touched. Restore runs in one transaction: rows already present
(by name; versions by certificate + fingerprint) are left as they are, missing ones are created, and a restored
certificate's current version is made current through ``versions.make_current`` (renewal policy, audit, push).
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from django.db import transaction
from django.utils import timezone

from certificates import x509
from certificates.models import (
    AcmeAccount,
    Certificate,
    CertificateIssuer,
    CertificateVersion,
    DnsUpdateServer,
)
from certificates.services import seams, versions

FORMAT = "gateway-worker-certificates-backup"
FORMAT_VERSION = 1
PASSPHRASE_ENV = "GATEWAY_WORKER_BACKUP_PASSPHRASE"
MIN_PASSPHRASE_LENGTH = 12
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1

ACCOUNT_FIELDS = ("name", "directory_url", "contact_email", "key_pem", "account_url", "eab_kid", "eab_hmac_key",
                  "tls_ca_bundle", "trust_roots_pem", "profile", "terms_agreed")
ACCOUNT_FIELDS_ADDED = {"trust_roots_pem": ""}  # absent from older backups: restored as this
DNS_FIELDS = ("name", "server", "port", "zone", "tsig_key_name", "tsig_algorithm", "tsig_secret",
              "propagation_timeout_seconds")
CERT_FIELDS = ("name", "common_name", "domains", "key_type", "challenge_type", "profile", "auto_renew", "state")
CERT_TIMES = ("not_after", "renew_after")
VERSION_FIELDS = ("source", "serial_hex", "fingerprint_sha256", "subject", "issuer_dn", "domains", "cert_pem",
                  "chain_pem", "key_pem", "key_type", "ari_cert_id", "revocation_reason")
VERSION_TIMES = ("not_before", "not_after", "created_at", "retired_at", "revoked_at")


class BackupError(Exception):
    """The backup cannot be written or read; nothing was changed."""


@dataclass
class RestoreResult:
    created: dict[str, int] = field(default_factory=lambda: {"accounts": 0, "dns_servers": 0, "certificates": 0,
                                                              "versions": 0})
    existing: dict[str, int] = field(default_factory=lambda: {"accounts": 0, "dns_servers": 0, "certificates": 0,
                                                               "versions": 0})
    warnings: list[str] = field(default_factory=list)


# --- passphrase and sealing ------------------------------------------------------------------------------------------

def read_passphrase(passphrase_file: str | None = None) -> str:
    """From ``passphrase_file`` (first line) or the environment variable ``GATEWAY_WORKER_BACKUP_PASSPHRASE``."""
    if passphrase_file:
        try:
            text = Path(passphrase_file).read_text().splitlines()
        except OSError as exc:
            raise BackupError(f"cannot read the passphrase file {passphrase_file}: {exc}") from exc
        passphrase = text[0] if text else ""
    else:
        passphrase = os.environ.get(PASSPHRASE_ENV, "")
    if not passphrase:
        raise BackupError(f"no passphrase: pass --passphrase-file or set {PASSPHRASE_ENV}")
    return passphrase


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


def _aad(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _check_passphrase_strength(passphrase: str) -> None:
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise BackupError(f"the passphrase must be at least {MIN_PASSPHRASE_LENGTH} characters")


def seal(payload: dict[str, Any], passphrase: str) -> bytes:
    _check_passphrase_strength(passphrase)
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    header = {
        "format": FORMAT, "version": FORMAT_VERSION, "cipher": "AES-256-GCM",
        "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
                "salt": base64.b64encode(salt).decode()},
        "nonce": base64.b64encode(nonce).decode(),
    }
    plaintext = gzip.compress(json.dumps(payload, separators=(",", ":")).encode())
    ciphertext = AESGCM(_derive(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)).encrypt(nonce, plaintext,
                                                                                          _aad(header))
    return json.dumps({**header, "ciphertext": base64.b64encode(ciphertext).decode()}).encode()


def unseal(data: bytes, passphrase: str) -> dict[str, Any]:
    try:
        envelope = json.loads(data)
        header = {k: envelope[k] for k in ("format", "version", "cipher", "kdf", "nonce")}
        ciphertext = base64.b64decode(envelope["ciphertext"])
        kdf = header["kdf"]
        salt = base64.b64decode(kdf["salt"])
        nonce = base64.b64decode(header["nonce"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError("not a gateway-worker certificate backup (unreadable envelope)") from exc
    if header["format"] != FORMAT:
        raise BackupError(f"not a gateway-worker certificate backup (format {header['format']!r})")
    if header["version"] != FORMAT_VERSION or header["cipher"] != "AES-256-GCM" or kdf.get("name") != "scrypt":
        raise BackupError(f"unsupported backup version/cipher: {header['version']} {header['cipher']}")
    if not (2**10 <= int(kdf["n"]) <= 2**20 and 1 <= int(kdf["r"]) <= 32 and 1 <= int(kdf["p"]) <= 16):
        raise BackupError("implausible key-derivation parameters in the backup header")
    key = _derive(passphrase, salt, int(kdf["n"]), int(kdf["r"]), int(kdf["p"]))
    try:
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, _aad(header))
    except InvalidTag as exc:
        raise BackupError("wrong passphrase, or the backup file was modified or truncated") from exc
    return json.loads(gzip.decompress(plaintext))


# --- export --------------------------------------------------------------------------------------------------

def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def build_payload() -> dict[str, Any]:
    """Everything to restore certificates elsewhere, private keys in clear (only ever written sealed)."""
    accounts = [{f: getattr(a, f) for f in ACCOUNT_FIELDS} for a in AcmeAccount.objects.order_by("name")]
    dns_servers = [{f: getattr(d, f) for f in DNS_FIELDS} for d in DnsUpdateServer.objects.order_by("name")]
    certificates = []
    certs = (Certificate.objects.order_by("name")
             .select_related("dns_server", "gateway_group", "current_version")
             .prefetch_related("certificateissuer_set__account", "versions__account"))
    for cert in certs:
        item: dict[str, Any] = {f: getattr(cert, f) for f in CERT_FIELDS}
        item.update({f: _iso(getattr(cert, f)) for f in CERT_TIMES})
        item["dns_server"] = cert.dns_server.name if cert.dns_server else None
        item["gateway_group"] = cert.gateway_group.name if cert.gateway_group else None
        item["issuers"] = [{"account": i.account.name, "priority": i.priority}
                           for i in cert.certificateissuer_set.all()]
        item["current_version"] = cert.current_version.fingerprint_sha256 if cert.current_version else None
        item["versions"] = [
            {**{f: getattr(v, f) for f in VERSION_FIELDS}, **{f: _iso(getattr(v, f)) for f in VERSION_TIMES},
             "account": v.account.name if v.account else None}
            for v in sorted(cert.versions.all(), key=lambda v: v.created_at)
        ]
        certificates.append(item)
    return {"created_at": timezone.now().isoformat(), "accounts": accounts, "dns_servers": dns_servers,
            "certificates": certificates}


def export_backup(output: Path, passphrase: str, *, actor: str = "manage.py export_certificates") -> dict[str, int]:
    """Write the sealed backup to ``output`` atomically (mode 0600); returns counts."""
    _check_passphrase_strength(passphrase)
    payload = build_payload()
    data = seal(payload, passphrase)
    tmp = output.with_name(f".{output.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BackupError(f"cannot write {output}: {exc}") from exc
    counts = {"accounts": len(payload["accounts"]), "dns_servers": len(payload["dns_servers"]),
              "certificates": len(payload["certificates"]),
              "versions": sum(len(c["versions"]) for c in payload["certificates"])}
    seams.record("certificates.exported", actor=actor, after={"file": output.name, **counts},
                 summary=f"encrypted certificate backup written to {output.name}")
    return counts


# --- restore -------------------------------------------------------------------------------------------------

def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _restore_version(cert: Certificate, item: dict[str, Any], accounts: dict[str, AcmeAccount]) -> bool:
    if CertificateVersion.objects.filter(certificate=cert, fingerprint_sha256=item["fingerprint_sha256"]).exists():
        return False
    try:
        matches = x509.key_matches_certificate(item["key_pem"], item["cert_pem"])
        actual = x509.certificate_info(item["cert_pem"]).fingerprint_sha256
    except x509.CertificateError as exc:
        raise BackupError(f"{cert.name}: a version's certificate or key is unreadable: {exc}") from exc
    if not matches or actual != item["fingerprint_sha256"]:
        raise BackupError(f"{cert.name}: version {item['serial_hex']} has a key or fingerprint that does not match")
    version = CertificateVersion.objects.create(
        certificate=cert, account=accounts.get(item.get("account") or ""),
        **{f: item[f] for f in VERSION_FIELDS},
        **{f: _time(item[f]) for f in VERSION_TIMES if f != "created_at"},
    )
    if item.get("created_at"):  # keep the history's order (created_at is auto_now_add)
        CertificateVersion.objects.filter(pk=version.pk).update(created_at=_time(item["created_at"]))
    return True


def _restore_certificate(item: dict[str, Any], accounts: dict[str, AcmeAccount], result: RestoreResult,
                         actor: str) -> None:
    cert = Certificate.objects.filter(name=item["name"]).first()
    if cert is None:
        group = None
        if item.get("gateway_group"):
            group = seams.gateway_group(item["gateway_group"])
            if group is None:
                result.warnings.append(f"{item['name']}: gateway group {item['gateway_group']} missing; "
                                       "restored for every group")
        dns_server = DnsUpdateServer.objects.filter(name=item["dns_server"]).first() if item["dns_server"] else None
        cert = Certificate.objects.create(
            **{f: item[f] for f in CERT_FIELDS}, **{f: _time(item[f]) for f in CERT_TIMES},
            dns_server=dns_server, gateway_group=group,
        )
        result.created["certificates"] += 1
    else:
        result.existing["certificates"] += 1
    for issuer in item["issuers"]:
        CertificateIssuer.objects.get_or_create(certificate=cert, account=accounts[issuer["account"]],
                                                defaults={"priority": issuer["priority"]})
    for version in item["versions"]:
        key = "created" if _restore_version(cert, version, accounts) else "existing"
        getattr(result, key)["versions"] += 1
    if cert.current_version_id is None and item["current_version"]:
        # served again the way every version is: renewal policy, audit, push to the certificate's group
        versions.make_current(cert, cert.versions.get(fingerprint_sha256=item["current_version"]), actor=actor,
                              action="certificate.version.restored")


def restore_payload(payload: dict[str, Any], *, actor: str = "manage.py restore_certificates") -> RestoreResult:
    """Create what is missing, in one transaction; an inconsistent payload rolls everything back."""
    result = RestoreResult()
    try:
        with transaction.atomic():
            accounts: dict[str, AcmeAccount] = {}
            for item in payload["accounts"]:
                values = {**ACCOUNT_FIELDS_ADDED, **item}
                account, created = AcmeAccount.objects.get_or_create(
                    name=item["name"], defaults={f: values[f] for f in ACCOUNT_FIELDS if f != "name"})
                accounts[account.name] = account
                result.created["accounts"] += created
                result.existing["accounts"] += not created
            for item in payload["dns_servers"]:
                _, created = DnsUpdateServer.objects.get_or_create(
                    name=item["name"], defaults={f: item[f] for f in DNS_FIELDS if f != "name"})
                result.created["dns_servers"] += created
                result.existing["dns_servers"] += not created
            for item in payload["certificates"]:
                _restore_certificate(item, accounts, result, actor)
            seams.record("certificates.restored", actor=actor,
                         after={"created": result.created, "existing": result.existing},
                         summary=f"restored certificate backup: created {result.created}")
    except (KeyError, TypeError, ValueError) as exc:
        raise BackupError(f"the backup's content is inconsistent ({type(exc).__name__}: {exc}); nothing restored") \
            from exc
    return result


def restore_backup(path: Path, passphrase: str, *, actor: str = "manage.py restore_certificates") -> RestoreResult:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc}") from exc
    return restore_payload(unseal(data, passphrase), actor=actor)
