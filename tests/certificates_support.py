"""Shared pieces for the certificate tests: ACME accounts on the fixture Pebble, certificates, a Gateway
stand-in that serves the ``acme_challenges`` resource from an nginx, and hand-made versions near expiry."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.db import close_old_connections, connection
from django.utils import timezone

from certificates import x509
from certificates.acme_client import generate_account_key
from certificates.models import (
    AcmeAccount,
    Certificate,
    CertificateIssuer,
    CertificateVersion,
    VersionSource,
)
from certificates.services.distribution import build_acme_challenges
from certificates.services.versions import make_current, store_version

_seq = itertools.count(1)


def pushes(resource_type: str = "certificates") -> int:
    """Desired-state versions stored so far for ``resource_type``."""
    from gateways.models import ResourceVersion

    return ResourceVersion.objects.filter(resource_type=resource_type).count()


def served_serials(group_name: str = "default") -> dict[str, str]:
    """Certificate name -> serial in the newest ``certificates`` desired state published for the group."""
    from gateways.models import ResourceVersion

    latest = (ResourceVersion.objects.filter(resource_type="certificates", group__name=group_name)
              .order_by("-id").first())
    return {} if latest is None else {c["name"]: c["serial"] for c in latest.summary.get("certificates", [])}


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_seq)}-{dt.datetime.now().strftime('%H%M%S%f')}"


def make_account(pebble, name: str | None = None, **extra) -> AcmeAccount:  # type: ignore[no-untyped-def]
    fields = {"directory_url": pebble.directory_url, "key_pem": generate_account_key(),
              "tls_ca_bundle": pebble.ca_bundle, "trust_roots_pem": pebble.roots_pem(),
              "contact_email": "ops@example.test", **extra}
    return AcmeAccount.objects.create(name=name or unique("pebble"), **fields)


def make_certificate(domains: list[str], *accounts: AcmeAccount, **fields) -> Certificate:  # type: ignore[no-untyped-def]
    cert = Certificate.objects.create(name=unique("cert"), common_name=domains[0], domains=domains,
                                      renew_after=timezone.now(), **fields)
    for priority, account in enumerate(accounts):
        CertificateIssuer.objects.create(certificate=cert, account=account, priority=priority)
    return cert


def assert_resumed_at_the_ca(order_id: int, ca_order_url: str, version: CertificateVersion) -> None:
    """The stored order kept the CA order it had before the crash, and the version is that order's certificate
    (not one from a second order placed at the CA, which a row count cannot tell apart)."""
    from certificates.acme_client import AcmeClient
    from certificates.models import AcmeOrder

    order = AcmeOrder.objects.select_related("account").get(pk=order_id)
    assert order.order_url == ca_order_url, "the order was placed at the CA again"
    assert order.account is not None
    client = AcmeClient.connect(order.account)
    at_ca = client.get_order(ca_order_url)
    assert at_ca.status == "valid" and at_ca.certificate_url, at_ca
    leaf, _ = x509.split_fullchain(client.download(at_ca.certificate_url))
    assert x509.certificate_info(leaf).serial_hex == version.serial_hex, "served a certificate from another order"


def install_expiring_version(cert: Certificate, days_left: float) -> CertificateVersion:
    """A real-looking (CA-signed, not temporary) version expiring in ``days_left`` days, made current."""
    now = timezone.now()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "test old CA")])
    key_pem = x509.generate_private_key("ec256")
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    leaf = (cx509.CertificateBuilder()
            .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, cert.domains[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(cx509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=85)).not_valid_after(now + dt.timedelta(days=days_left))
            .add_extension(cx509.SubjectAlternativeName([cx509.DNSName(d) for d in cert.domains]), False)
            .sign(ca_key, hashes.SHA256()))
    pem = leaf.public_bytes(serialization.Encoding.PEM).decode()
    version, _ = store_version(cert, source=VersionSource.IMPORTED, leaf_pem=pem, chain_pem="", key_pem=key_pem,
                               info=x509.certificate_info(pem))
    make_current(cert, version)
    cert.refresh_from_db()
    return version


class ChallengeFiles:
    """A Gateway stand-in for tests that do not run the push plane: keeps ``challenge_dir`` equal to the
    ``acme_challenges`` resource (what the reference agent does from the push stream). ``ack`` plays the
    Gateway's ACK: it returns once the files match the state published so far."""

    def __init__(self, challenge_dir: Path, interval: float = 0.01) -> None:
        self.dir, self.interval = challenge_dir, interval
        self.stop = threading.Event()
        self.synced_round = 0
        self.cond = threading.Condition()
        self.dir.mkdir(parents=True, exist_ok=True)

    def loop(self) -> None:
        try:
            while not self.stop.is_set():
                wanted = {c["token"]: c["key_authorization"] for c in build_acme_challenges(None)["challenges"]}
                for token, body in wanted.items():
                    path = self.dir / token
                    if not path.exists():
                        tmp = self.dir / f".{token}.tmp"
                        tmp.write_text(body)
                        tmp.rename(path)
                for path in self.dir.iterdir():
                    if not path.name.startswith(".") and path.name not in wanted:
                        path.unlink(missing_ok=True)
                close_old_connections()
                with self.cond:
                    self.synced_round += 1
                    self.cond.notify_all()
                self.stop.wait(self.interval)
        finally:
            connection.close()

    def ack(self, versions: object = None, timeout: float = 10.0) -> tuple[bool, str]:
        with self.cond:
            target = self.synced_round + 2  # a full pass that started after the caller's commit
            ok = self.cond.wait_for(lambda: self.synced_round >= target, timeout)
        return ok, "" if ok else "challenge files not written in time"


@contextmanager
def challenge_files(challenge_dir: Path, monkeypatch=None) -> Iterator[ChallengeFiles]:  # type: ignore[no-untyped-def]
    from certificates.services import seams

    files = ChallengeFiles(challenge_dir)
    thread = threading.Thread(target=files.loop, daemon=True, name="challenge-files")
    thread.start()
    if monkeypatch is not None:
        monkeypatch.setattr(seams, "wait_for_acks", files.ack)
    try:
        yield files
    finally:
        files.stop.set()
        thread.join(timeout=5)
