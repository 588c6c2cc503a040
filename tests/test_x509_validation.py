"""validate_issued_certificate on certificates Pebble really issued: accepted when everything holds, each
failure a specific reason."""

from __future__ import annotations

import datetime as dt

import pytest

from certificates import x509 as cx
from tests.peers.bind import BindServer
from tests.peers.pebble import Pebble, issue_with_http01


@pytest.fixture(scope="module")
def issued(pebble: Pebble, bind_server: BindServer) -> dict[str, str]:
    domains = [f"valid.{bind_server.zone}", f"www.valid.{bind_server.zone}"]
    key_pem = cx.generate_private_key("ec256")
    fullchain = issue_with_http01(pebble, cx.make_csr(key_pem, domains))
    leaf, chain = cx.split_fullchain(fullchain)
    return {"leaf": leaf, "chain": chain, "fullchain": fullchain, "key": key_pem, "roots": pebble.roots_pem(),
            "d0": domains[0], "d1": domains[1]}


def _validate(issued: dict[str, str], **overrides: object) -> cx.CertificateInfo:
    args: dict[str, object] = {
        "cert_pem": issued["leaf"], "chain_pem": issued["chain"], "key_pem": issued["key"],
        "domains": [issued["d0"], issued["d1"]], "trust_roots_pem": issued["roots"],
    }
    args.update(overrides)
    return cx.validate_issued_certificate(**args)  # type: ignore[arg-type]


def _reason(issued: dict[str, str], **overrides: object) -> str:
    with pytest.raises(cx.CertificateValidationError) as err:
        _validate(issued, **overrides)
    return err.value.reason


@pytest.mark.slow
def test_pebble_certificate_validates(issued: dict[str, str]) -> None:
    info = _validate(issued)
    assert info.domains == [issued["d0"], issued["d1"]]
    assert not info.is_temporary and not info.is_self_signed
    # a fullchain as cert_pem with an empty chain works too
    assert _validate(issued, cert_pem=issued["fullchain"], chain_pem="").serial_hex == info.serial_hex
    assert "." in cx.ari_cert_id(issued["leaf"])  # Pebble leaves carry an AKI


@pytest.mark.slow
def test_untrusted_root(issued: dict[str, str], pebble_eab: Pebble) -> None:
    assert _reason(issued, trust_roots_pem=pebble_eab.roots_pem()) == "untrusted_chain"


@pytest.mark.slow
def test_missing_intermediate(issued: dict[str, str]) -> None:
    assert _reason(issued, chain_pem="") == "untrusted_chain"


@pytest.mark.slow
def test_key_mismatch(issued: dict[str, str]) -> None:
    assert _reason(issued, key_pem=cx.generate_private_key("ec256")) == "key_mismatch"


@pytest.mark.slow
def test_names_not_covered(issued: dict[str, str], bind_server: BindServer) -> None:
    assert _reason(issued, domains=[issued["d0"], f"other.{bind_server.zone}"]) == "names_not_covered"


@pytest.mark.slow
def test_expired_and_not_yet_valid(issued: dict[str, str]) -> None:
    info = cx.certificate_info(issued["leaf"])
    assert _reason(issued, now=info.not_after + dt.timedelta(seconds=1)) == "expired"
    assert _reason(issued, now=info.not_before - dt.timedelta(minutes=10)) == "not_yet_valid"
    # within the clock-skew tolerance: accepted
    assert _validate(issued, now=info.not_before - dt.timedelta(minutes=2)).serial_hex == info.serial_hex


@pytest.mark.slow
def test_temporary_certificate_is_not_trusted_as_issued(issued: dict[str, str]) -> None:
    cert_pem, key_pem = cx.make_temporary_certificate([issued["d0"]], "ec256", 10)
    assert _reason(issued, cert_pem=cert_pem, key_pem=key_pem, chain_pem="", domains=[issued["d0"]]) == (
        "untrusted_chain")


def test_garbage_is_unreadable() -> None:
    with pytest.raises(cx.CertificateValidationError) as err:
        cx.validate_issued_certificate("junk", "", "junk", ["a.example.com"], "junk")
    assert err.value.reason == "unreadable"
