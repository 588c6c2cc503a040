"""Threat-intelligence feeds: fetch (conditional GET), parse, validate, store with provenance, merge, propose.

A feed is a URL serving IPs/CIDRs as plain text, CSV, Spamhaus DROP (``1.2.3.0/24 ; SBL123``) or JSON. Each entry
is validated on its own; a refused entry (not an address, host bits set, over-broad like ``0.0.0.0/0``, private or
loopback space where the feed does not allow it) is skipped with a clear message kept on the feed, and the rest
are taken. The merged list of every enabled feed has the allow list applied (an allowed address is cut out of any
network that covers it, so allow always wins) and is proposed to the WAF as a new version of the gateway.yaml
config document named by ``THREAT_FEED_CONFIG_DOCUMENT`` (``waf.ip_blacklist``), through waf_config's own
``create_version``: validated at once, then replayed, approved by a person and deployed like any other change.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations.models import (
    FeedFormat,
    ThreatAllowEntry,
    ThreatFeed,
    ThreatIndicator,
    ThreatListPublication,
)

logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
REFUSED_KEPT = 50  # refused entries remembered on the feed (the count is complete)
ADDRESS_KEYS = ("ip", "cidr", "network", "address", "ip_address", "prefix")
NOTE_KEYS = ("comment", "reason", "description", "sblid", "id", "category")


class FeedError(Exception):
    """The feed as a whole could not be used (unreachable, unparseable); its previous entries stay."""


class EntryRefused(ValueError):
    """One entry refused; the message says exactly why."""


@dataclass(frozen=True)
class RawEntry:
    value: str
    provenance: str  # "line 3: SBL123"


@dataclass
class FetchResult:
    status: str  # updated | not_modified | failed
    accepted: int = 0
    refused: list[str] = field(default_factory=list)
    error: str = ""
    bytes_received: int = 0


@dataclass
class BlockEntry:
    network: str
    sources: list[str]


# ------------------------------------------------------------------------------------------------ parsing


def _strip_comment(line: str) -> tuple[str, str]:
    for mark in ("#", ";"):
        if mark in line:
            value, _, note = line.partition(mark)
            return value.strip(), note.strip()
    return line.strip(), ""


def parse_text(text: str) -> Iterator[RawEntry]:
    for number, line in enumerate(text.splitlines(), 1):
        value, note = _strip_comment(line)
        if value:
            yield RawEntry(value, f"line {number}" + (f": {note}" if note else ""))


def parse_drop(text: str) -> Iterator[RawEntry]:
    """Spamhaus DROP/EDROP: ``; comment`` lines, entries ``1.2.3.0/24 ; SBL123``."""
    return parse_text(text)


def parse_csv(text: str) -> Iterator[RawEntry]:
    rows = [(n, row) for n, row in enumerate(csv.reader(io.StringIO(text)), 1)
            if row and not row[0].lstrip().startswith("#")]
    column = 0
    if rows:
        header = [cell.strip().lower() for cell in rows[0][1]]
        named = [i for i, cell in enumerate(header) if cell in ADDRESS_KEYS]
        if named:
            column = named[0]
            rows = rows[1:]
    for number, row in rows:
        if column >= len(row) or not row[column].strip():
            continue
        others = [cell.strip() for i, cell in enumerate(row) if i != column and cell.strip()]
        yield RawEntry(row[column].strip(), f"line {number}" + (f": {', '.join(others)}"[:250] if others else ""))


def parse_json(text: str) -> Iterator[RawEntry]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FeedError(f"not JSON: {exc}") from None
    items: Any = document
    if isinstance(document, dict):
        lists = [document[k] for k in ("entries", "data", "ips", "networks", "blocklist") if isinstance(
            document.get(k), list)]
        if not lists:
            raise FeedError("JSON object has no list under entries, data, ips, networks or blocklist")
        items = lists[0]
    if not isinstance(items, list):
        raise FeedError("JSON feed is neither a list nor an object holding one")
    for index, item in enumerate(items):
        where = f"item {index}"
        if isinstance(item, str):
            yield RawEntry(item.strip(), where)
        elif isinstance(item, dict):
            value = next((str(item[k]) for k in ADDRESS_KEYS if k in item), "")
            note = next((str(item[k]) for k in NOTE_KEYS if item.get(k)), "")
            yield RawEntry(value.strip(), where + (f": {note}"[:250] if note else ""))
        else:
            yield RawEntry(json.dumps(item)[:60], where)


PARSERS = {FeedFormat.TEXT: parse_text, FeedFormat.DROP: parse_drop, FeedFormat.CSV: parse_csv,
           FeedFormat.JSON: parse_json}


# ------------------------------------------------------------------------------------------------ validation


def validate_entry(value: str, *, allow_private: bool = False) -> Network:
    """One IP or CIDR a feed may block, or ``EntryRefused`` saying why not."""
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            loose = ipaddress.ip_network(value, strict=False)
            raise EntryRefused(f"{value!r} has host bits set (did the feed mean {loose}?)") from None
        raise EntryRefused(f"{value!r} is not an IP address or CIDR network") from None
    minimum = settings.THREAT_FEED_MIN_PREFIX_V4 if network.version == 4 else settings.THREAT_FEED_MIN_PREFIX_V6
    if network.prefixlen < minimum:
        raise EntryRefused(f"{value!r} is over-broad: /{network.prefixlen} covers {network.num_addresses} addresses "
                           f"(feeds may list IPv{network.version} networks of /{minimum} or narrower)")
    if network.network_address.is_unspecified or network.is_multicast:
        raise EntryRefused(f"{value!r} is {'unspecified' if network.network_address.is_unspecified else 'multicast'} "
                           "address space, never a traffic source")
    if not allow_private and (network.is_private or network.is_loopback or network.is_link_local
                              or network.is_reserved):
        kind = ("loopback" if network.is_loopback else "link-local" if network.is_link_local
                else "reserved" if network.is_reserved else "private")
        raise EntryRefused(f"{value!r} is {kind} address space; this feed does not allow private entries "
                           "(allow_private)")
    return network


# ------------------------------------------------------------------------------------------------ fetching


def _get(feed: ThreatFeed) -> tuple[int, bytes, dict[str, str]]:
    headers = {"User-Agent": "gateway-worker-feeds/1", "Accept-Encoding": "identity"}
    if feed.etag:
        headers["If-None-Match"] = feed.etag
    if feed.last_modified:
        headers["If-Modified-Since"] = feed.last_modified
    if not feed.url.startswith(("http://", "https://")):
        raise FeedError("feed URL is not http(s)")
    request = urllib.request.Request(feed.url, headers=headers)  # noqa: S310 — scheme checked above
    try:
        with urllib.request.urlopen(request, timeout=settings.THREAT_FEED_TIMEOUT) as response:  # noqa: S310
            body = response.read(settings.THREAT_FEED_MAX_BYTES + 1)
            if len(body) > settings.THREAT_FEED_MAX_BYTES:
                raise FeedError(f"feed larger than THREAT_FEED_MAX_BYTES ({settings.THREAT_FEED_MAX_BYTES})")
            return int(response.status), body, dict(response.headers.items())
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return 304, b"", dict(exc.headers.items())
        raise FeedError(f"feed answered HTTP {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise FeedError(f"cannot reach the feed: {getattr(exc, 'reason', exc)}") from None


def fetch_feed(feed: ThreatFeed) -> FetchResult:
    """One conditional GET; a changed feed replaces the feed's indicators (previous ones kept on failure)."""
    now = timezone.now()
    try:
        status, body, headers = _get(feed)
        if status == 304:
            ThreatFeed.objects.filter(pk=feed.pk).update(last_fetched_at=now, last_status="not_modified",
                                                         last_error="")
            return FetchResult("not_modified")
        entries = list(PARSERS[FeedFormat(feed.format)](body.decode("utf-8", errors="replace")))
    except (FeedError, ValueError) as exc:
        ThreatFeed.objects.filter(pk=feed.pk).update(last_fetched_at=now, last_status="failed",
                                                     last_error=str(exc)[:2000])
        logger.warning("threat feed %s: %s (previous entries kept)", feed.name, exc)
        return FetchResult("failed", error=str(exc))
    accepted: dict[str, str] = {}
    refused: list[str] = []
    for entry in entries:
        try:
            network = validate_entry(entry.value, allow_private=feed.allow_private)
        except EntryRefused as exc:
            refused.append(f"{entry.provenance}: {exc}")
            continue
        accepted.setdefault(str(network), entry.provenance[:300])
    lower = {k.lower(): v for k, v in headers.items()}
    with transaction.atomic():
        _replace_indicators(feed, accepted, now)
        ThreatFeed.objects.filter(pk=feed.pk).update(
            etag=lower.get("etag", "")[:200], last_modified=lower.get("last-modified", "")[:100],
            last_fetched_at=now, last_status="updated", last_accepted=len(accepted),
            last_refused=refused[:REFUSED_KEPT], last_error=f"{len(refused)} entries refused" if refused else "")
    logger.info("threat feed %s: %d entries, %d refused", feed.name, len(accepted), len(refused))
    return FetchResult("updated", accepted=len(accepted), refused=refused, bytes_received=len(body))


def _replace_indicators(feed: ThreatFeed, accepted: dict[str, str], now: Any) -> None:
    existing = {row.network: row for row in ThreatIndicator.objects.filter(feed=feed)}
    ThreatIndicator.objects.filter(feed=feed).exclude(network__in=list(accepted)).delete()
    ThreatIndicator.objects.filter(feed=feed, network__in=[n for n in accepted if n in existing]).update(
        last_seen=now)
    ThreatIndicator.objects.bulk_create(
        [ThreatIndicator(feed=feed, network=n, provenance=p, last_seen=now)
         for n, p in accepted.items() if n not in existing], batch_size=1000)


# ------------------------------------------------------------------------------------------------ merging


def _minus(network: Network, allowed: Iterable[Network]) -> list[Network]:
    """``network`` with every allowed network cut out of it (address_exclude keeps the rest as CIDRs)."""
    parts = [network]
    for allow in allowed:
        if allow.version != network.version:
            continue
        next_parts: list[Network] = []
        for part in parts:
            if not part.overlaps(allow):
                next_parts.append(part)
            elif allow.supernet_of(part):  # type: ignore[arg-type]
                continue
            else:
                next_parts.extend(part.address_exclude(allow))  # type: ignore[arg-type]
        parts = next_parts
    return parts


def merged_blocklist() -> list[BlockEntry]:
    """Every enabled feed's entries, a network inside another listed one dropped, allow list applied. Sorted."""
    sources: dict[Network, set[str]] = {}
    rows = ThreatIndicator.objects.filter(feed__enabled=True).values_list("network", "feed__name")
    for network_text, feed_name in rows:
        sources.setdefault(ipaddress.ip_network(network_text), set()).add(feed_name)
    nets = sorted(sources, key=lambda n: (n.version, n.prefixlen, n.network_address))
    kept: list[Network] = []
    for net in nets:  # broadest first: a network inside a kept one adds nothing
        cover = next((k for k in kept if k.version == net.version and k.supernet_of(net)), None)  # type: ignore[arg-type]
        if cover is not None:
            sources[cover] |= sources[net]
            continue
        kept.append(net)
    allowed = [ipaddress.ip_network(a) for a in ThreatAllowEntry.objects.values_list("network", flat=True)]
    merged: dict[Network, set[str]] = {}
    for net in kept:
        for part in _minus(net, allowed):
            merged.setdefault(part, set()).update(sources[net])
    ordered = sorted(merged, key=lambda n: (n.version, n.network_address, n.prefixlen))
    return [BlockEntry(str(n) if n.num_addresses > 1 else str(n.network_address), sorted(merged[n]))
            for n in ordered]


def fetch_all_and_publish() -> dict[str, Any]:
    results = {}
    for feed in ThreatFeed.objects.filter(enabled=True).order_by("pk"):
        result = fetch_feed(feed)
        results[feed.name] = {"status": result.status, "accepted": result.accepted, "refused": len(result.refused)}
    version = None
    if settings.THREAT_FEED_CONFIG_DOCUMENT:
        from integrations.feed_publish import propose_blocklist

        version = propose_blocklist(settings.THREAT_FEED_CONFIG_DOCUMENT)
    return {"feeds": results, "proposed_version": version.pk if version is not None else None}


__all__ = ["ThreatListPublication", "fetch_feed", "merged_blocklist", "validate_entry"]
