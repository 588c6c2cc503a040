"""DNS-01 through RFC 2136 dynamic updates signed with TSIG (dnspython), and waiting until the records answer.

The record for ``domain`` (or ``*.domain``) is ``_acme-challenge.domain TXT <value>``, value = base64url SHA-256 of
the key authorization (``acme``'s ``DNS01.validation(account_key)``). All records for one update server go in a
single UPDATE message; removal deletes only our values, so two orders sharing a name do not clobber each other.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.update

if TYPE_CHECKING:
    from certificates.models import DnsUpdateServer

logger = logging.getLogger(__name__)

CHALLENGE_LABEL = "_acme-challenge"
DEFAULT_TTL = 60
_ALGORITHMS = {
    "hmac-sha256": dns.tsig.HMAC_SHA256, "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512, "hmac-sha224": dns.tsig.HMAC_SHA224, "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-md5": dns.tsig.HMAC_MD5,
}


class Dns01Error(Exception):
    """A DNS-01 step failed; ``rcode`` is the server's answer (REFUSED, NOTAUTH, ...) when it gave one."""

    def __init__(self, message: str, rcode: str = "") -> None:
        super().__init__(message)
        self.rcode = rcode


class PropagationTimeout(Dns01Error):
    """The records did not answer within the update server's propagation timeout."""


@dataclass(frozen=True)
class UpdateTarget:
    """Where and how to send updates: an unsaved view of a ``DnsUpdateServer`` (the secret stays in memory)."""

    server: str
    port: int
    zone: str
    tsig_key_name: str
    tsig_secret: str  # base64
    tsig_algorithm: str = "hmac-sha256"
    propagation_timeout: float = 120.0
    timeout: float = 5.0  # per DNS message

    @classmethod
    def from_model(cls, row: DnsUpdateServer) -> UpdateTarget:
        return cls(server=row.server, port=row.port, zone=row.zone, tsig_key_name=row.tsig_key_name,
                   tsig_secret=row.tsig_secret or "", tsig_algorithm=row.tsig_algorithm,
                   propagation_timeout=float(row.propagation_timeout_seconds))

    def __repr__(self) -> str:  # never show the secret
        return f"UpdateTarget({self.server}:{self.port}, zone={self.zone}, key={self.tsig_key_name})"


def challenge_record_name(domain: str) -> str:
    """``_acme-challenge.<domain>``; a wildcard's record sits on its base name (RFC 8555 §8.4)."""
    domain = domain.strip().rstrip(".").lower()
    if domain.startswith("*."):
        domain = domain[2:]
    return f"{CHALLENGE_LABEL}.{domain}"


def _server_address(target: UpdateTarget) -> str:
    try:
        ipaddress.ip_address(target.server)
        return target.server
    except ValueError:
        pass
    try:
        return str(socket.getaddrinfo(target.server, target.port, proto=socket.IPPROTO_UDP)[0][4][0])
    except OSError as exc:
        raise Dns01Error(f"cannot resolve the DNS update server {target.server!r}: {exc}") from exc


def _keyring(target: UpdateTarget) -> tuple[dict[dns.name.Name, dns.tsig.Key], dns.name.Name]:
    algorithm = _ALGORITHMS.get(target.tsig_algorithm.lower().rstrip("."))
    if algorithm is None:
        raise Dns01Error(f"unsupported TSIG algorithm {target.tsig_algorithm!r} (use hmac-sha256)")
    try:
        base64.b64decode(target.tsig_secret, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Dns01Error("the TSIG secret is not valid base64") from exc
    name = dns.name.from_text(target.tsig_key_name)
    return {name: dns.tsig.Key(name, target.tsig_secret, algorithm)}, name


def _relative_names(target: UpdateTarget, records: Iterable[tuple[str, str]]) -> list[tuple[dns.name.Name, str]]:
    zone = dns.name.from_text(target.zone)
    out = []
    for domain, value in records:
        name = dns.name.from_text(challenge_record_name(domain))
        if not name.is_subdomain(zone):
            raise Dns01Error(f"{domain} is not in the zone {target.zone} served by {target.server}")
        out.append((name, value))
    return out


def _send_update(target: UpdateTarget, update: dns.update.UpdateMessage, what: str) -> None:
    address = _server_address(target)
    try:
        response = dns.query.tcp(update, address, port=target.port, timeout=target.timeout)
    except dns.tsig.PeerBadSignature as exc:
        raise Dns01Error(f"{what}: the server rejected our TSIG signature (BADSIG): wrong secret for key "
                         f"{target.tsig_key_name}?", rcode="NOTAUTH") from exc
    except dns.tsig.PeerBadKey as exc:
        raise Dns01Error(f"{what}: the server does not know TSIG key {target.tsig_key_name} (BADKEY)",
                         rcode="NOTAUTH") from exc
    except dns.tsig.PeerBadTime as exc:
        raise Dns01Error(f"{what}: the server says our clock is off (BADTIME)", rcode="NOTAUTH") from exc
    except dns.tsig.PeerError as exc:
        raise Dns01Error(f"{what}: TSIG error from the server: {exc}", rcode="NOTAUTH") from exc
    except dns.exception.Timeout as exc:
        raise Dns01Error(f"{what}: no answer from {target.server}:{target.port} within {target.timeout} s") from exc
    except (OSError, dns.exception.DNSException) as exc:
        raise Dns01Error(f"{what}: cannot talk to {target.server}:{target.port}: {exc}") from exc
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        text = dns.rcode.to_text(rcode)
        hint = {
            "REFUSED": "the server refuses updates from this key for this zone (allow-update / update-policy)",
            "NOTAUTH": "the server is not authoritative for the zone or did not accept our TSIG key",
            "NOTZONE": "a name is outside the zone",
            "SERVFAIL": "the server failed to apply the update",
        }.get(text, "")
        raise Dns01Error(f"{what}: {target.server} answered {text}" + (f": {hint}" if hint else ""), rcode=text)


def _update(target: UpdateTarget, records: Sequence[tuple[str, str]], add: bool, ttl: int) -> None:
    if not records:
        return
    keyring, keyname = _keyring(target)
    names = _relative_names(target, records)
    update = dns.update.UpdateMessage(target.zone, keyring=keyring, keyname=keyname)
    for name, value in names:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, _quote(value))
        if add:
            update.add(name, ttl, rdata)
        else:
            update.delete(name, rdata)
    verb = "adding" if add else "removing"
    _send_update(target, update, f"{verb} {len(names)} _acme-challenge TXT record(s) in {target.zone}")
    logger.info("dns01: %s %d TXT record(s) in %s via %s", verb, len(names), target.zone, target.server)


def _quote(value: str) -> str:
    if not value or any(c in value for c in "\"\\ ;") or len(value) > 255:
        raise Dns01Error(f"not a DNS-01 validation value: {value[:40]!r}")
    return f'"{value}"'


def add_txt_records(target: UpdateTarget, records: Sequence[tuple[str, str]], ttl: int = DEFAULT_TTL) -> None:
    """Add ``(domain, value)`` TXT records in one signed UPDATE. Adding a value already there is harmless."""
    _update(target, records, add=True, ttl=ttl)


def remove_txt_records(target: UpdateTarget, records: Sequence[tuple[str, str]]) -> None:
    """Delete exactly these values (other values on the same name stay). Removing an absent one is harmless."""
    _update(target, records, add=False, ttl=0)


def query_txt(name: str, server: str, port: int, timeout: float = 2.0) -> set[str]:
    """The TXT values at ``name`` as ``server`` answers them now (empty when none)."""
    query = dns.message.make_query(name, dns.rdatatype.TXT)
    response, _ = dns.query.udp_with_fallback(query, server, port=port, timeout=timeout)
    values: set[str] = set()
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            for rdata in rrset:
                values.add(b"".join(rdata.strings).decode())
    return values


def wait_for_propagation(
    target: UpdateTarget, records: Sequence[tuple[str, str]], *, nameservers: Sequence[tuple[str, int]] = (),
    timeout: float | None = None, interval: float = 0.1, max_interval: float = 2.0,
) -> float:
    """Poll the update server (and any extra ``nameservers``, e.g. secondaries) until every record answers;
    returns the seconds waited, or :class:`PropagationTimeout` after ``timeout`` (the server's setting)."""
    timeout = target.propagation_timeout if timeout is None else timeout
    wanted: dict[str, set[str]] = {}
    for domain, value in records:
        wanted.setdefault(challenge_record_name(domain) + ".", set()).add(value)
    servers = [(_server_address(target), target.port), *nameservers]
    start = time.monotonic()
    pending = {(server, name) for server in servers for name in wanted}
    last_error = ""
    while True:
        for server, name in sorted(pending):
            try:
                if wanted[name] <= query_txt(name, server[0], server[1], timeout=min(2.0, target.timeout)):
                    pending.discard((server, name))
            except (OSError, dns.exception.DNSException) as exc:
                last_error = f" (last error from {server[0]}:{server[1]}: {exc})"
        if not pending:
            return time.monotonic() - start
        elapsed = time.monotonic() - start
        if elapsed >= timeout:
            missing = ", ".join(sorted(f"{name} at {s[0]}:{s[1]}" for s, name in pending))
            raise PropagationTimeout(f"TXT records not visible after {timeout:.0f} s: {missing}{last_error}")
        time.sleep(min(interval, max(0.0, timeout - elapsed)))
        interval = min(interval * 1.5, max_interval)


def publish_and_wait(target: UpdateTarget, records: Sequence[tuple[str, str]], **kwargs: object) -> float:
    """Add the records and wait until they answer; on a propagation timeout the records are removed again."""
    add_txt_records(target, records)
    try:
        return wait_for_propagation(target, records, **kwargs)  # type: ignore[arg-type]
    except PropagationTimeout:
        try:
            remove_txt_records(target, records)
        except Dns01Error:
            logger.warning("dns01: cleanup after a propagation timeout failed in %s", target.zone)
        raise
