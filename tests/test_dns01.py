"""RFC 2136 + TSIG against the real BIND fixture: add, batch, remove, propagation wait, and clear errors."""

from __future__ import annotations

import base64
import dataclasses
import secrets

import pytest

from certificates import dns01
from tests.peers.bind import BindServer


def _target(bind: BindServer, **overrides: object) -> dns01.UpdateTarget:
    target = dns01.UpdateTarget(server=bind.host, port=bind.port, zone=bind.zone, tsig_key_name=bind.tsig_key_name,
                                tsig_secret=bind.tsig_secret, tsig_algorithm=bind.tsig_algorithm,
                                propagation_timeout=5)
    return dataclasses.replace(target, **overrides)


def _value() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def _txt(bind: BindServer, domain: str) -> set[str]:
    return dns01.query_txt(dns01.challenge_record_name(domain) + ".", bind.host, bind.port)


def test_challenge_record_name() -> None:
    assert dns01.challenge_record_name("*.Example.test.") == "_acme-challenge.example.test"
    assert dns01.challenge_record_name("a.example.test") == "_acme-challenge.a.example.test"


def test_add_wait_remove_batch(bind_server: BindServer) -> None:
    target = _target(bind_server)
    base = f"batch-{secrets.token_hex(3)}.{bind_server.zone}"
    records = [(base, _value()), (f"*.{base}", _value()), (f"www.{base}", _value())]
    dns01.add_txt_records(target, records)
    waited = dns01.wait_for_propagation(target, records)
    assert waited < 5
    # base and wildcard share one name, holding both values
    assert _txt(bind_server, base) == {records[0][1], records[1][1]}
    assert _txt(bind_server, f"www.{base}") == {records[2][1]}
    # removing one value leaves the other (two orders on one name must not clobber each other)
    dns01.remove_txt_records(target, [records[0]])
    assert _txt(bind_server, base) == {records[1][1]}
    dns01.remove_txt_records(target, records[1:])
    assert _txt(bind_server, base) == set() and _txt(bind_server, f"www.{base}") == set()
    dns01.remove_txt_records(target, records[1:])  # again: harmless


def test_wrong_secret_is_a_clear_error_and_changes_nothing(bind_server: BindServer) -> None:
    wrong = base64.b64encode(secrets.token_bytes(32)).decode()
    domain = f"wrong-secret.{bind_server.zone}"
    with pytest.raises(dns01.Dns01Error, match="BADSIG|TSIG") as err:
        dns01.add_txt_records(_target(bind_server, tsig_secret=wrong), [(domain, _value())])
    assert err.value.rcode == "NOTAUTH"
    assert wrong not in str(err.value)
    assert _txt(bind_server, domain) == set()


def test_unknown_key_is_a_clear_error(bind_server: BindServer) -> None:
    with pytest.raises(dns01.Dns01Error, match="BADKEY|TSIG") as err:
        dns01.add_txt_records(_target(bind_server, tsig_key_name="nobody"), [(f"k.{bind_server.zone}", _value())])
    assert err.value.rcode == "NOTAUTH"


def test_update_for_a_zone_the_server_does_not_serve_is_refused_or_notauth(bind_server: BindServer) -> None:
    with pytest.raises(dns01.Dns01Error) as err:
        dns01.add_txt_records(_target(bind_server, zone="other.test"), [("a.other.test", _value())])
    assert err.value.rcode in {"NOTAUTH", "REFUSED"}


def test_domain_outside_the_zone_rejected_before_sending(bind_server: BindServer) -> None:
    inside = (f"inside.{bind_server.zone}", _value())
    with pytest.raises(dns01.Dns01Error, match="not in the zone"):
        dns01.add_txt_records(_target(bind_server), [inside, ("a.example.com", _value())])
    assert _txt(bind_server, inside[0]) == set()  # nothing half-written


def test_bad_secret_and_algorithm_rejected_locally(bind_server: BindServer) -> None:
    with pytest.raises(dns01.Dns01Error, match="base64"):
        dns01.add_txt_records(_target(bind_server, tsig_secret="not base64!"), [(f"x.{bind_server.zone}", "v")])
    with pytest.raises(dns01.Dns01Error, match="unsupported TSIG algorithm"):
        dns01.add_txt_records(_target(bind_server, tsig_algorithm="rot13"), [(f"x.{bind_server.zone}", "v")])


def test_propagation_timeout(bind_server: BindServer) -> None:
    with pytest.raises(dns01.PropagationTimeout, match="not visible after"):
        dns01.wait_for_propagation(_target(bind_server), [(f"never.{bind_server.zone}", _value())], timeout=0.5)


def test_unreachable_server(bind_server: BindServer) -> None:
    from tests.peers.bind import free_udp_tcp_port

    target = _target(bind_server, port=free_udp_tcp_port(), timeout=1)
    with pytest.raises(dns01.Dns01Error, match="cannot talk|no answer"):
        dns01.add_txt_records(target, [(f"x.{bind_server.zone}", _value())])


@pytest.mark.django_db
def test_target_from_model(bind_server: BindServer) -> None:
    from certificates.models import DnsUpdateServer

    row = DnsUpdateServer.objects.create(
        name="bind", server=bind_server.host, port=bind_server.port, zone=bind_server.zone,
        tsig_key_name=bind_server.tsig_key_name, tsig_secret=bind_server.tsig_secret, propagation_timeout_seconds=7,
    )
    target = dns01.UpdateTarget.from_model(DnsUpdateServer.objects.get(pk=row.pk))
    assert target.propagation_timeout == 7 and bind_server.tsig_secret not in repr(target)
    records = [(f"model.{bind_server.zone}", _value())]
    assert dns01.publish_and_wait(target, records) < 7
    dns01.remove_txt_records(target, records)
