"""Pure X.509 building blocks on ``cryptography``: keys, CSRs, parsing, temporary certificates, validation of what a
CA issued, the RFC 9773 ARI certificate id, domain-name validation and the renewal-due moment.

Nothing here touches the database; every function takes and returns PEM text (``str``) and aware UTC datetimes.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

import idna
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from worker_project.dnsnames import name_covered  # noqa: F401 - re-exported: one wildcard rule

KEY_TYPES = ("ec256", "ec384", "rsa2048", "rsa3072", "rsa4096")
_CURVES: dict[str, ec.EllipticCurve] = {"ec256": ec.SECP256R1(), "ec384": ec.SECP384R1()}
_RSA_BITS = {"rsa2048": 2048, "rsa3072": 3072, "rsa4096": 4096}

#: Private OID marking a temporary (failover) certificate; the extension value is the DER UTF8String
#: "temporary". Non-critical, so TLS clients ignore it; a Gateway or an operator can look for it.
TEMPORARY_EXTENSION_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.1")
TEMPORARY_MARKER = "temporary"
TEMPORARY_ORGANIZATION = "gateway-worker temporary certificate"
TEMPORARY_UNIT = "TEMPORARY"
TEMPORARY_MIN_DAYS, TEMPORARY_MAX_DAYS = 7, 30

#: Tolerated clock difference between us and the CA for a certificate whose notBefore is just ahead of us.
DEFAULT_CLOCK_SKEW = dt.timedelta(minutes=5)


class CertificateError(ValueError):
    """Input that is not a usable key or certificate."""


class CertificateValidationError(CertificateError):
    """An issued certificate failed validation; ``reason`` is a short code, the message says what and why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class DomainNameError(ValueError):
    """A domain name that no certificate can carry."""


# --- keys and CSRs -----------------------------------------------------------------------------------------------

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def generate_private_key(key_type: str) -> str:
    """A new private key of ``key_type`` (ec256, ec384, rsa2048, rsa3072, rsa4096) as PKCS#8 PEM."""
    key: PrivateKey
    if key_type in _CURVES:
        key = ec.generate_private_key(_CURVES[key_type])
    elif key_type in _RSA_BITS:
        key = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[key_type])
    else:
        raise CertificateError(f"unknown key type {key_type!r}; expected one of {', '.join(KEY_TYPES)}")
    return _key_to_pem(key)


def _key_to_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def load_private_key(key_pem: str) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"not a readable unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertificateError(f"unsupported private key type {type(key).__name__} (ECDSA or RSA only)")
    return key


def key_type_of(key_pem: str) -> str:
    """The ``KeyType`` value of a PEM private key (e.g. for imported certificates)."""
    key = load_private_key(key_pem)
    if isinstance(key, rsa.RSAPrivateKey):
        bits = {v: k for k, v in _RSA_BITS.items()}.get(key.key_size)
        if bits is None:
            raise CertificateError(f"unsupported RSA key size {key.key_size}")
        return bits
    for name, curve in _CURVES.items():
        if key.curve.name == curve.name:
            return name
    raise CertificateError(f"unsupported elliptic curve {key.curve.name}")


def make_csr(key_pem: str, domains: Sequence[str]) -> str:
    """A PEM CSR for ``domains`` (SANs, in order; the first is also the subject CN when it fits in 64 chars)."""
    if not domains:
        raise CertificateError("a CSR needs at least one domain")
    key = load_private_key(key_pem)
    names = [validate_domain_name(d) for d in domains]
    builder = x509.CertificateSigningRequestBuilder()
    if len(names[0]) <= 64:
        builder = builder.subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
    builder = builder.add_extension(
        x509.SubjectAlternativeName([x509.DNSName(n) for n in dict.fromkeys(names)]), critical=False
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


# --- parsing -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CertificateInfo:
    serial_hex: str  # lowercase hex without leading zeros, as the Gateway reports it
    fingerprint_sha256: str  # lowercase hex of SHA-256 over the leaf DER
    subject: str  # RFC 4514
    issuer_dn: str
    common_name: str
    domains: list[str]  # DNS SANs in certificate order
    not_before: dt.datetime
    not_after: dt.datetime
    is_temporary: bool
    is_self_signed: bool


def load_certificates(pem: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise CertificateError(f"not a readable PEM certificate: {exc}") from exc
    return certs


def parse_certificate(pem: str) -> x509.Certificate:
    """The first certificate of a PEM (the leaf of a fullchain)."""
    return load_certificates(pem)[0]


def certificate_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [name.lower() for name in san.get_values_for_type(x509.DNSName)]


def _common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else ""
    return value if isinstance(value, str) else value.decode(errors="replace")


def is_temporary_certificate(cert: x509.Certificate) -> bool:
    try:
        cert.extensions.get_extension_for_oid(TEMPORARY_EXTENSION_OID)
    except x509.ExtensionNotFound:
        return False
    return True


def certificate_info(pem: str | x509.Certificate) -> CertificateInfo:
    cert = parse_certificate(pem) if isinstance(pem, str) else pem
    return CertificateInfo(
        serial_hex=format(cert.serial_number, "x"),
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        subject=cert.subject.rfc4514_string(),
        issuer_dn=cert.issuer.rfc4514_string(),
        common_name=_common_name(cert),
        domains=dns_names(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        is_temporary=is_temporary_certificate(cert),
        is_self_signed=cert.issuer == cert.subject,
    )


def split_fullchain(pem: str) -> tuple[str, str]:
    """``(leaf_pem, chain_pem)``; the chain holds the remaining certificates (intermediates), possibly empty."""
    certs = load_certificates(pem)
    return certificate_pem(certs[0]), "".join(certificate_pem(c) for c in certs[1:])


def key_matches_certificate(key_pem: str, cert_pem: str) -> bool:
    key = load_private_key(key_pem)
    cert = parse_certificate(cert_pem)
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt)


# --- temporary (failover) certificates ---------------------------------------------------------------------------

def _der_utf8string(text: str) -> bytes:
    data = text.encode()
    if len(data) >= 128:
        raise ValueError("marker too long for a short-form DER length")
    return bytes([0x0C, len(data)]) + data


def make_temporary_certificate(
    domains: Sequence[str], key_type: str = "ec256", validity_days: int = 14, *,
    key_pem: str | None = None, now: dt.datetime | None = None,
) -> tuple[str, str]:
    """A self-signed certificate for ``domains`` with the same CN (first domain) and SANs, returned as
    ``(cert_pem, key_pem)``. Marked temporary three ways a Gateway or operator can see: subject
    O="gateway-worker temporary certificate", OU="TEMPORARY", and the non-critical extension
    ``TEMPORARY_EXTENSION_OID`` (1.3.6.1.4.1.55555.1.1) = UTF8String "temporary". Validity clamped to 7–30 days.
    """
    if not domains:
        raise CertificateError("a temporary certificate needs at least one domain")
    names = list(dict.fromkeys(validate_domain_name(d) for d in domains))
    key_pem = key_pem or generate_private_key(key_type)
    key = load_private_key(key_pem)
    days = min(max(int(validity_days), TEMPORARY_MIN_DAYS), TEMPORARY_MAX_DAYS)
    now = now or dt.datetime.now(dt.UTC)
    subject_attrs = [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, TEMPORARY_ORGANIZATION),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, TEMPORARY_UNIT),
    ]
    if len(names[0]) <= 64:
        subject_attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, names[0]))
    subject = x509.Name(subject_attrs)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # a Gateway clock slightly behind still accepts it
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(TEMPORARY_EXTENSION_OID, _der_utf8string(TEMPORARY_MARKER)), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return certificate_pem(cert), key_pem


# --- validation ----------------------------------------------------------------------------------------------------

def validate_certificate_basics(
    cert_pem: str, key_pem: str, domains: Sequence[str], now: dt.datetime | None = None,
    clock_skew: dt.timedelta = DEFAULT_CLOCK_SKEW,
) -> CertificateInfo:
    """Key matches, SANs cover every requested domain, inside its validity (``notBefore`` up to ``clock_skew``
    ahead is tolerated). Used alone for temporary certificates; :func:`validate_issued_certificate` adds the
    chain."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        info = certificate_info(cert_pem)
        matches = key_matches_certificate(key_pem, cert_pem)
    except CertificateError as exc:
        raise CertificateValidationError("unreadable", str(exc)) from exc
    if not matches:
        raise CertificateValidationError("key_mismatch", "the private key does not match the certificate")
    missing = [d for d in domains if not name_covered(d, info.domains)]
    if missing:
        raise CertificateValidationError(
            "names_not_covered",
            f"the certificate's names {', '.join(info.domains) or '(none)'} do not cover {', '.join(missing)}",
        )
    if info.not_after <= now:
        raise CertificateValidationError("expired", f"the certificate expired at {info.not_after.isoformat()}")
    if info.not_before > now + clock_skew:
        raise CertificateValidationError(
            "not_yet_valid",
            f"the certificate is valid only from {info.not_before.isoformat()}, more than "
            f"{int(clock_skew.total_seconds())} s ahead of our clock ({now.isoformat()})",
        )
    return info


def _verification_name(domain: str) -> str:
    # the server verifier takes a concrete host name; any label stands in for a requested wildcard
    return "wildcard-check" + domain[1:] if domain.startswith("*.") else domain


def validate_issued_certificate(
    cert_pem: str, chain_pem: str, key_pem: str, domains: Sequence[str], trust_roots_pem: str,
    now: dt.datetime | None = None, clock_skew: dt.timedelta = DEFAULT_CLOCK_SKEW,
) -> CertificateInfo:
    """Raise :class:`CertificateValidationError` unless the certificate is safe to push: chain builds to one of
    ``trust_roots_pem`` for TLS server use and every requested name, key matches, SANs cover ``domains``, not
    expired and not (beyond ``clock_skew``) yet valid. ``cert_pem`` may be a fullchain (the rest is chain)."""
    now = now or dt.datetime.now(dt.UTC)
    info = validate_certificate_basics(cert_pem, key_pem, domains, now, clock_skew)
    try:
        certs = load_certificates(cert_pem)
        intermediates = certs[1:] + (load_certificates(chain_pem) if chain_pem.strip() else [])
        roots = load_certificates(trust_roots_pem)
    except CertificateError as exc:
        raise CertificateValidationError("unreadable", str(exc)) from exc
    # a notBefore slightly ahead of us (within the tolerated skew) is checked as of that moment
    at = max(now, info.not_before)
    for domain in domains or info.domains:
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(roots))
            .time(at)
            .build_server_verifier(verification.DNSName(_verification_name(domain)))
        )
        try:
            verifier.verify(certs[0], intermediates)
        except verification.VerificationError as exc:
            raise CertificateValidationError(
                "untrusted_chain", f"the chain does not build to a trusted root for {domain}: {exc}"
            ) from exc
    return info


# --- ACME Renewal Information --------------------------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def ari_cert_id(cert_pem: str | x509.Certificate) -> str:
    """The RFC 9773 certificate identifier: base64url(AKI keyIdentifier) "." base64url(serial DER content)."""
    cert = parse_certificate(cert_pem) if isinstance(cert_pem, str) else cert_pem
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound as exc:
        raise CertificateError("the certificate has no Authority Key Identifier: no ARI id") from exc
    if aki.key_identifier is None:
        raise CertificateError("the Authority Key Identifier has no keyIdentifier: no ARI id")
    serial = cert.serial_number
    # DER INTEGER content: minimal two's complement, so a leading 0x00 when the top bit is set
    serial_der = serial.to_bytes(serial.bit_length() // 8 + 1, "big")
    return f"{_b64url(aki.key_identifier)}.{_b64url(serial_der)}"


# --- domain names ----------------------------------------------------------------------------------------------------

_LDH = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def validate_domain_name(name: str, *, allow_wildcard: bool = True) -> str:
    """The normalized (lowercase, A-label, no trailing dot) form of ``name``, or :class:`DomainNameError`
    saying what is wrong: empty, too long, a bad label, an IP address, a bad IDN, a misplaced wildcard."""
    if not isinstance(name, str) or not name.strip():
        raise DomainNameError("empty domain name")
    original = name
    name = name.strip().rstrip(".").lower()
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise DomainNameError(f"{original!r} is an IP address, not a domain name")
    labels = name.split(".")
    wildcard = labels[0] == "*"
    if any("*" in label for label in labels[1:]) or ("*" in labels[0] and not wildcard):
        raise DomainNameError(f"{original!r}: a wildcard is allowed only as the whole leftmost label (*.example.com)")
    if wildcard and not allow_wildcard:
        raise DomainNameError(f"{original!r}: wildcard names are not allowed here (HTTP-01 cannot validate them)")
    ascii_labels = ["*"] if wildcard else []
    for label in labels[1:] if wildcard else labels:
        if not label:
            raise DomainNameError(f"{original!r} has an empty label")
        if not label.isascii():
            try:
                label = idna.encode(label, uts46=True).decode()
            except idna.IDNAError as exc:
                raise DomainNameError(f"{original!r}: label {label!r} is not a valid IDN: {exc}") from exc
        elif label.startswith("xn--"):
            try:
                idna.decode(label)
            except idna.IDNAError as exc:
                raise DomainNameError(f"{original!r}: label {label!r} is not a valid A-label: {exc}") from exc
        if len(label) > 63:
            raise DomainNameError(f"{original!r}: label {label[:20]}… is longer than 63 characters")
        if not _LDH.match(label):
            raise DomainNameError(
                f"{original!r}: label {label!r} may hold only letters, digits and inner hyphens"
            )
        ascii_labels.append(label)
    if len(ascii_labels) - (1 if wildcard else 0) < 2:
        raise DomainNameError(f"{original!r} needs at least two labels below the wildcard (e.g. example.com)")
    if ascii_labels[-1].isdigit():
        raise DomainNameError(f"{original!r}: the top-level label cannot be all digits")
    normalized = ".".join(ascii_labels)
    if len(normalized) > 253:
        raise DomainNameError(f"{original!r} is longer than 253 characters")
    return normalized


# --- renewal policy --------------------------------------------------------------------------------------------------

def renewal_due_at(not_before: dt.datetime, not_after: dt.datetime, days_before: int = 30) -> dt.datetime:
    """When renewal is due: when ``days_before`` days are left, or a third of the lifetime when that is less.

    That is, remaining time <= min(30 days, lifetime / 3): a 90-day certificate renews at 30 days left, a 45-day
    one at 15 days left, a 6-day one after 4 days. (Taking the earlier *moment* instead would make every
    certificate shorter than 30 days due the moment it is issued.)"""
    lifetime = not_after - not_before
    return not_after - min(dt.timedelta(days=days_before), lifetime / 3)
