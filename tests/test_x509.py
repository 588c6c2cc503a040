"""Pure X.509 helpers: keys, CSRs, parsing, temporary certificates, ARI id, domain names, renewal-due time."""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from certificates import x509 as cx

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("key_type", "kind", "size"),
    [("ec256", ec.EllipticCurvePrivateKey, 256), ("ec384", ec.EllipticCurvePrivateKey, 384),
     ("rsa2048", rsa.RSAPrivateKey, 2048), ("rsa3072", rsa.RSAPrivateKey, 3072)],
)
def test_generate_private_key_types(key_type: str, kind: type, size: int) -> None:
    pem = cx.generate_private_key(key_type)
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    key = cx.load_private_key(pem)
    assert isinstance(key, kind) and key.key_size == size
    assert cx.key_type_of(pem) == key_type


def test_unknown_key_type_is_a_clear_error() -> None:
    with pytest.raises(cx.CertificateError, match="unknown key type 'dsa'"):
        cx.generate_private_key("dsa")


def test_make_csr_carries_cn_and_all_sans() -> None:
    csr = x509.load_pem_x509_csr(cx.make_csr(cx.generate_private_key("ec256"), ["A.Example.com", "b.example.com"])
                                 .encode())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "a.example.com"
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["a.example.com", "b.example.com"]


def test_make_csr_rejects_bad_domain() -> None:
    with pytest.raises(cx.DomainNameError):
        cx.make_csr(cx.generate_private_key("ec256"), ["bad_name.example.com"])


def test_temporary_certificate_is_marked_and_clamped() -> None:
    cert_pem, key_pem = cx.make_temporary_certificate(["www.example.com", "*.example.com"], "ec256", 90, now=NOW)
    cert = cx.parse_certificate(cert_pem)
    info = cx.certificate_info(cert_pem)
    assert info.is_temporary and info.is_self_signed
    assert info.common_name == "www.example.com"
    assert info.domains == ["www.example.com", "*.example.com"]
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == cx.TEMPORARY_ORGANIZATION
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "TEMPORARY"
    ext = cert.extensions.get_extension_for_oid(cx.TEMPORARY_EXTENSION_OID)
    assert not ext.critical and ext.value.value == b"\x0c\x09temporary"
    assert info.not_after - NOW == dt.timedelta(days=30)  # 90 clamped to 30
    short = cx.certificate_info(cx.make_temporary_certificate(["a.example.com"], "ec256", 1, now=NOW)[0])
    assert short.not_after - NOW == dt.timedelta(days=7)  # 1 clamped to 7
    assert cx.key_matches_certificate(key_pem, cert_pem)
    cx.validate_certificate_basics(cert_pem, key_pem, ["www.example.com", "x.example.com"], now=NOW)


def test_temporary_certificate_readable_by_openssl() -> None:
    cert_pem, _ = cx.make_temporary_certificate(["www.example.com"], "rsa2048", 10)
    text = subprocess.run(["openssl", "x509", "-noout", "-text"], input=cert_pem, capture_output=True, text=True,
                          check=True).stdout
    assert "1.3.6.1.4.1.55555.1.1" in text and "temporary" in text
    assert "O=gateway-worker temporary certificate" in text.replace(" = ", "=")


def test_certificate_info_serial_and_fingerprint_match_openssl() -> None:
    cert_pem, _ = cx.make_temporary_certificate(["www.example.com"], "ec256", 10)
    info = cx.certificate_info(cert_pem)
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-fingerprint", "-sha256"], input=cert_pem,
                         capture_output=True, text=True, check=True).stdout
    serial = out.split("serial=")[1].split()[0].lower().lstrip("0")
    fingerprint = out.split("Fingerprint=")[1].split()[0].replace(":", "").lower()
    assert info.serial_hex == serial and info.fingerprint_sha256 == fingerprint
    assert info.not_before.tzinfo is not None


def test_split_fullchain() -> None:
    a, _ = cx.make_temporary_certificate(["a.example.com"], "ec256", 10)
    b, _ = cx.make_temporary_certificate(["b.example.com"], "ec256", 10)
    leaf, chain = cx.split_fullchain(a + b)
    assert leaf == a and chain == b
    assert cx.split_fullchain(a) == (a, "")
    with pytest.raises(cx.CertificateError):
        cx.split_fullchain("not a pem")


def test_key_mismatch_detected() -> None:
    cert_pem, _ = cx.make_temporary_certificate(["a.example.com"], "ec256", 10)
    other = cx.generate_private_key("ec256")
    assert not cx.key_matches_certificate(other, cert_pem)
    with pytest.raises(cx.CertificateValidationError) as err:
        cx.validate_certificate_basics(cert_pem, other, ["a.example.com"])
    assert err.value.reason == "key_mismatch"


@pytest.mark.parametrize(
    ("requested", "sans", "covered"),
    [
        ("a.example.com", ["a.example.com"], True),
        ("A.Example.com", ["a.example.com"], True),
        ("a.example.com", ["*.example.com"], True),
        ("example.com", ["*.example.com"], False),
        ("b.a.example.com", ["*.example.com"], False),
        ("*.example.com", ["*.example.com"], True),
        ("*.example.com", ["a.example.com"], False),
        ("*.a.example.com", ["*.example.com"], False),
    ],
)
def test_name_covered(requested: str, sans: list[str], covered: bool) -> None:
    assert cx.name_covered(requested, sans) is covered


def test_ari_cert_id_rfc9773_example_serial_encoding() -> None:
    # RFC 9773 §4.1: serial 0x87654321 (top bit set) encodes with a leading zero byte as "AIdlQyE"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    aki = bytes.fromhex("69885b6b87464041e1b37b847ba0ae2cde01c8d4")  # the RFC example
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(0x87654321).not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.AuthorityKeyIdentifier(aki, None, None), critical=False)
        .sign(key, cx.hashes.SHA256())
    )
    assert cx.ari_cert_id(cert) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
    assert cx.ari_cert_id(cx.certificate_pem(cert)) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


def test_ari_cert_id_needs_aki() -> None:
    cert_pem, _ = cx.make_temporary_certificate(["a.example.com"], "ec256", 10)
    with pytest.raises(cx.CertificateError, match="Authority Key Identifier"):
        cx.ari_cert_id(cert_pem)


@pytest.mark.parametrize(
    ("name", "normalized"),
    [("Www.Example.COM.", "www.example.com"), ("*.example.com", "*.example.com"),
     ("bücher.example", "xn--bcher-kva.example"), ("xn--bcher-kva.example", "xn--bcher-kva.example"),
     ("a-b.c9.example.test", "a-b.c9.example.test")],
)
def test_validate_domain_name_normalizes(name: str, normalized: str) -> None:
    assert cx.validate_domain_name(name) == normalized


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("localhost", "at least two labels"),
        ("*.com", "at least two labels"),
        ("a..example.com", "empty label"),
        ("a.*.example.com", "leftmost"),
        ("w*.example.com", "leftmost"),
        ("-a.example.com", "inner hyphens"),
        ("a_b.example.com", "inner hyphens"),
        ("a" * 64 + ".example.com", "longer than 63"),
        (".".join(["a" * 63] * 4) + ".com", "longer than 253"),
        ("192.0.2.1", "IP address"),
        ("example.123", "all digits"),
        ("xn--zz.example", "not a valid A-label"),
    ],
)
def test_validate_domain_name_errors(name: str, message: str) -> None:
    with pytest.raises(cx.DomainNameError, match=message):
        cx.validate_domain_name(name)


def test_wildcard_refused_when_not_allowed() -> None:
    with pytest.raises(cx.DomainNameError, match="HTTP-01"):
        cx.validate_domain_name("*.example.com", allow_wildcard=False)


@pytest.mark.parametrize(
    ("lifetime_days", "due_days_after_issue"),
    [(90, 60), (6, 4), (45, 30), (30, 20), (365, 335)],
)
def test_renewal_due_at(lifetime_days: int, due_days_after_issue: int) -> None:
    not_after = NOW + dt.timedelta(days=lifetime_days)
    assert cx.renewal_due_at(NOW, not_after) == NOW + dt.timedelta(days=due_days_after_issue)
