"""Adopt the certificates a Gateway already serves, from its certificate directory (FORMATS §c.3):
``<domain>.crt`` (leaf first, a fullchain is fine), ``<domain>.key``, optional ``<domain>.chain.pem``; a wildcard's
files are named ``*.example.com.crt``. Each file set is imported in its own transaction: a bad one is reported by
name and skipped, the others go in, nothing is half-written. Re-importing finds the same fingerprint and skips.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from certificates import x509
from certificates.models import Certificate, CertificateVersion, ChallengeType, VersionSource
from certificates.services import seams, versions

LEAF_SUFFIXES = (".crt", ".cert", ".pem")
MAX_FILE_BYTES = 1 << 20
IMPORT_ACTOR = "manage.py import_certificates"


class ImportFileError(Exception):
    """One certificate file set cannot be imported; the message says why."""


@dataclass
class ImportResult:
    imported: list[str] = field(default_factory=list)  # certificate names that got a new version
    unchanged: list[str] = field(default_factory=list)  # already there (same fingerprint)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)


def certificate_name_for(domain: str) -> str:
    """The slug a certificate for ``domain`` is stored under: ``*.example.com`` -> ``wildcard-example-com``."""
    slug = domain.lower().replace("*.", "wildcard.", 1)
    return re.sub(r"[^a-z0-9-]+", "-", slug).strip("-")[:128]


def leaf_files(directory: Path) -> list[Path]:
    """Leaf certificate files, as the Gateway's watcher would load them (``*.chain.pem`` is never a leaf)."""
    return sorted(
        p for p in directory.iterdir()
        if p.is_file() and p.suffix in LEAF_SUFFIXES and not p.name.endswith(".chain.pem")
    )


def _read(path: Path) -> str:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ImportFileError(f"{path.name} is larger than {MAX_FILE_BYTES} bytes")
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportFileError(f"cannot read {path.name}: {exc}") from exc


def _load_file_set(leaf_path: Path) -> tuple[str, str, str, str]:
    """``(domain, leaf_pem, chain_pem, key_pem)`` for one leaf file, checked."""
    domain_stem = leaf_path.name[: -len(leaf_path.suffix)]
    key_path = leaf_path.with_name(domain_stem + ".key")
    if not key_path.exists():
        raise ImportFileError(f"no private key {key_path.name} beside {leaf_path.name}")
    try:
        domain = x509.validate_domain_name(domain_stem)
        leaf_pem, inline_chain = x509.split_fullchain(_read(leaf_path))
        key_pem = _read(key_path)
        x509.key_type_of(key_pem)  # a readable ECDSA/RSA key of a supported size
        chain_path = leaf_path.with_name(domain_stem + ".chain.pem")
        chain_pem = inline_chain
        if chain_path.exists():
            chain_pem = "".join(x509.certificate_pem(c) for c in x509.load_certificates(_read(chain_path)))
    except (x509.CertificateError, x509.DomainNameError) as exc:
        raise ImportFileError(f"{leaf_path.name}: {exc}") from exc
    if not x509.key_matches_certificate(key_pem, leaf_pem):
        raise ImportFileError(f"{key_path.name} does not match {leaf_path.name}")
    info = x509.certificate_info(leaf_pem)
    if not x509.name_covered(domain, info.domains):
        raise ImportFileError(f"{leaf_path.name} does not cover {domain} (names: {', '.join(info.domains) or 'none'})")
    return domain, leaf_pem, chain_pem, key_pem


def _ordered_domains(domain: str, info: x509.CertificateInfo) -> list[str]:
    names = [x509.validate_domain_name(d) for d in info.domains]
    first = domain if domain in names else (info.common_name.lower() if info.common_name.lower() in names else names[0])
    return [first, *[n for n in names if n != first]]


def import_file_set(leaf_path: Path, *, actor: str = IMPORT_ACTOR) -> tuple[Certificate, bool]:
    """Import one ``<domain>.crt`` with its key (and chain); returns ``(certificate, created_version)``. A version
    that expires later than the one served becomes current through ``versions.make_current`` (renewal policy,
    audit, push), like any other."""
    domain, leaf_pem, chain_pem, key_pem = _load_file_set(leaf_path)
    info = x509.certificate_info(leaf_pem)
    try:
        domains = _ordered_domains(domain, info)
    except x509.DomainNameError as exc:
        raise ImportFileError(f"{leaf_path.name}: a SAN is not a usable domain name: {exc}") from exc
    existing = CertificateVersion.objects.select_related("certificate").filter(
        fingerprint_sha256=info.fingerprint_sha256).first()
    if existing is not None:
        return existing.certificate, False
    name = certificate_name_for(domain)
    with transaction.atomic():
        cert = Certificate.objects.select_for_update().filter(name=name).first()
        if cert is not None and not all(x509.name_covered(d, domains) for d in cert.domains):
            raise ImportFileError(
                f"{leaf_path.name} does not cover the names of the existing certificate {name} "
                f"({', '.join(cert.domains)})"
            )
        if cert is None:
            cert = Certificate.objects.create(
                name=name, common_name=domains[0], domains=domains, key_type=x509.key_type_of(key_pem),
                challenge_type=ChallengeType.DNS_01 if any(d.startswith("*.") for d in domains)
                else ChallengeType.HTTP_01,
            )
        source = VersionSource.TEMPORARY if info.is_temporary else VersionSource.IMPORTED
        version, _ = versions.store_version(cert, source=source, leaf_pem=leaf_pem, chain_pem=chain_pem,
                                            key_pem=key_pem, info=info)
        seams.record(
            "certificate.imported", cert, actor=actor,
            after={"serial": info.serial_hex, "fingerprint_sha256": info.fingerprint_sha256,
                   "domains": info.domains, "not_after": info.not_after.isoformat(), "file": leaf_path.name},
            summary=f"imported {leaf_path.name} (serial {info.serial_hex}) as {cert.name}",
        )
        current = cert.current_version
        if current is None or info.not_after > current.not_after:
            versions.make_current(cert, version, actor=actor)
    return cert, True


def import_directory(directory: Path, *, actor: str = IMPORT_ACTOR) -> ImportResult:
    """Import every leaf file in ``directory`` (not recursive); a bad file set is reported and skipped."""
    if not directory.is_dir():
        raise ImportFileError(f"{directory} is not a directory")
    result = ImportResult()
    for leaf in leaf_files(directory):
        try:
            cert, created = import_file_set(leaf, actor=actor)
        except ImportFileError as exc:
            result.errors.append((leaf.name, str(exc)))
            continue
        (result.imported if created else result.unchanged).append(cert.name)
    return result
