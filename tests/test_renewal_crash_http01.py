"""Crash test through the real push plane: a ``celery worker`` renewing an HTTP-01 certificate is SIGKILLed
mid-order (tokens pushed and ACKed but not answered, or finalized at the CA but nothing downloaded); a new
worker gets the redelivered task and resumes the stored order. Pebble validates against the nginx that the
reference gateway-agent feeds from run_grpc, and the end state is checked where it matters: exactly one new
version, current, ACKed by the agent, presented in a TLS handshake, and no challenge token left live."""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis
from django.conf import settings

from certificates.acme_client import AcmeClient
from certificates.models import AcmeChallenge, AcmeOrder, Certificate, CertificateVersion, OrderStatus
from certificates.tasks import renew_certificate
from gateways.models import GatewayGroup, InstanceResourceState, ResourceVersion
from gateways.resources import parse_payload
from gateways.services import desired_version, wait_for_acks
from tests.certificates_support import install_expiring_version, make_account, make_certificate, unique
from tests.push_support import wait_until
from tests.test_certificates_e2e import Fleet, fleet  # noqa: F401 - the fixture, shared with the e2e tests
from tests.test_renewal_crash import _start_worker, _stop, _wait
from worker_project import queues

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

HELD_STATUS = {"authorizing": OrderStatus.AUTHORIZING, "finalizing": OrderStatus.FINALIZING}


def _challenge_url(fleet: Fleet, token: str) -> str:  # noqa: F811
    return f"http://127.0.0.1:{fleet.nginx.http_port}/.well-known/acme-challenge/{token}"


def _http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def _log_says(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")


def _acked_by_agent(resource_type: str, group: GatewayGroup, wanted) -> ResourceVersion:  # type: ignore[no-untyped-def]
    """The desired ``resource_type`` version of ``group`` once ``wanted(message)`` holds for it, after every
    connected instance (the one agent) ACKed it."""
    def matching() -> ResourceVersion | None:
        rv = desired_version(resource_type, group)
        return rv if rv is not None and wanted(parse_payload(resource_type, bytes(rv.payload))) else None

    rv = wait_until(matching, timeout=15, message=f"a {resource_type} state that matches")
    acks = wait_for_acks([rv], timeout=15)
    assert acks.ok and acks.instances == 1, acks
    assert InstanceResourceState.objects.get(instance__instance_id="edge-1", resource_type=resource_type
                                             ).acked_version >= rv.pk
    return rv


@pytest.mark.parametrize("step", ["authorizing", "finalizing"])
def test_sigkill_mid_http01_order_then_restart_serves_exactly_one_new_version(  # type: ignore[no-untyped-def]
        step: str, pebble, bind_server, fleet: Fleet, tmp_path: Path) -> None:  # noqa: F811
    started = time.monotonic()
    broker = redis.Redis.from_url(settings.REDIS_URL)
    broker.delete(queues.CERTIFICATES, "unacked", "unacked_index")  # no stale messages from an earlier run
    name = f"{unique('crash-h1')}.{bind_server.zone}"
    cert = make_certificate([name], make_account(pebble))
    old = install_expiring_version(cert, days_left=5)  # a renewal: the Gateway serves an old version first
    group = GatewayGroup.objects.get(name="default")
    _acked_by_agent("certificates", group, lambda m: [c.version_id for c in m.certificates] == [old.pk])
    fleet.wait_served(name, old.serial_hex)

    first = _start_worker(tmp_path, "doomed", CERT_TEST_HOLD=f"{step}:300")
    second = None
    try:
        renew_certificate.delay(cert.pk)
        _wait(lambda: _log_says(tmp_path / "doomed.log", f"CERT_TEST_HOLD: holding at {step}"), 30,
              f"the first worker to hold the order at {step}")
        order = AcmeOrder.objects.get(certificate=cert)
        assert order.status == HELD_STATUS[step] and order.order_url
        tokens = dict(AcmeChallenge.objects.filter(order=order).values_list("token", "key_authorization"))
        assert len(tokens) == 1
        for token, key_authorization in tokens.items():  # pushed, ACKed, written by the agent, served
            assert _http_get(_challenge_url(fleet, token)) == (200, key_authorization)
        time.sleep(0.3)  # had the worker answered the challenge, Pebble (no VA sleep) would have moved on
        ca_status = AcmeClient.connect(order.account).get_order(order.order_url).status
        assert ca_status in ({"pending"} if step == "authorizing" else {"processing", "valid"}), ca_status
        _stop(first, signal.SIGKILL)  # the whole process group, mid-order
        killed_at = time.monotonic()
        assert not CertificateVersion.objects.filter(certificate=cert).exclude(pk=old.pk).exists()

        second = _start_worker(tmp_path, "survivor")
        _wait(lambda: Certificate.objects.get(pk=cert.pk).current_version_id != old.pk, 30,
              "the redelivered task to finish the order on the second worker")
        resumed_in = time.monotonic() - killed_at
    finally:
        _stop(first, signal.SIGKILL)
        if second is not None:
            _stop(second)

    # exactly one order, resumed (same CA order), not redone, and valid
    assert list(AcmeOrder.objects.filter(certificate=cert).values_list("pk", "status", "order_url")) == [
        (order.pk, OrderStatus.VALID, order.order_url)]
    new = CertificateVersion.objects.get(certificate=cert, order=order)
    assert set(CertificateVersion.objects.filter(certificate=cert).values_list("pk", flat=True)) == {old.pk, new.pk}
    assert new.key_pem == order.key_pem and new.source == "acme"
    cert.refresh_from_db()
    assert cert.current_version_id == new.pk

    # the agent ACKed a certificates state carrying that version, and nginx presents it
    _acked_by_agent("certificates", group, lambda m: [(c.version_id, c.serial) for c in m.certificates] == [
        (new.pk, new.serial_hex)])
    served = fleet.wait_served(name, new.serial_hex)
    assert format(served.serial_number, "x") == new.serial_hex != old.serial_hex

    # no challenge token left live: not stored, not in the ACKed desired state, not on disk, not served
    assert not AcmeChallenge.objects.filter(order__certificate=cert).exists()
    _acked_by_agent("acme_challenges", group, lambda m: not m.challenges)
    assert not any(fleet.nginx.challenge_dir.iterdir())
    for token in tokens:
        assert _http_get(_challenge_url(fleet, token))[0] == 404
    print(f"{step}: resumed and served {resumed_in:.1f}s after the SIGKILL, "
          f"{time.monotonic() - started:.1f}s in all")
