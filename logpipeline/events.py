"""The one internal event shape every door produces, and the enrichment every parser applies.

``LogEvent`` is a request (``kind="request"``) or a security event the Gateway reported (``kind="security"``: its
WAF text lines). Every event carries the Gateway instance it came from (``instance``, set by the door from the
sender's authenticated identity, never from the record) and a UTC timestamp in epoch seconds (``ts``).

Enrichment, all cached per distinct input because logs repeat themselves (same user agents, same paths):

- ``path``: the URI path percent-decoded (twice, as probes double-encode), with ``//`` and ``/./`` collapsed and
  ``..`` kept (a traversal must stay visible); ``route``: the path with ids (numbers, UUIDs, long hex) as ``{id}``;
- ``query``: parsed lazily from the URI (``LogEvent.query_params()``), values decoded;
- ``client_ip``: the peer address, or the right-most untrusted ``X-Forwarded-For`` hop when the peer is one of
  ``LOG_TRUSTED_PROXIES`` (the header is ignored from anyone else, so a client cannot choose its own address);
- ``ua_class``: ``browser``, ``crawler``, ``scanner``, ``tool``, ``empty`` or ``other``;
- ``network``: the client's /24 (IPv4) or /64 (IPv6), the ASN-less grouping distributed probing is counted on.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, unquote

# A timestamp further ahead than this is refused as malformed: it would sit in every window forever.
MAX_FUTURE_SECONDS = 24 * 3600.0
MIN_TIMESTAMP = 946684800.0  # 2000-01-01: older is a unit error (a LogEntry in seconds read as ms, ...)


class ParseError(ValueError):
    """A line or record that cannot become an event; the message is the reason shown in samples."""


@dataclass(slots=True)
class LogEvent:
    instance: str
    ts: float  # epoch seconds, UTC
    kind: str = "request"  # request | security
    client_ip: str | None = None
    method: str = ""
    host: str = ""
    uri: str = ""
    path: str = ""
    route: str = ""
    status: int | None = None
    bytes_sent: int | None = None
    bytes_received: int | None = None
    response_time_ms: float | None = None
    user_agent: str = ""
    ua_class: str = "empty"
    network: str = ""
    referer: str = ""
    request_id: str = ""
    waf_action: str = ""
    waf_rule_id: str = ""
    event_type: str = ""  # security events: waf_block, waf_rule, modsecurity, rate_limited
    level: str = ""
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def timestamp(self) -> datetime:
        return datetime.fromtimestamp(self.ts, UTC)

    def query_params(self) -> dict[str, list[str]]:
        return query_params(self.uri)


def check_timestamp(ts: float, now: float) -> float:
    if ts != ts or ts > now + MAX_FUTURE_SECONDS:  # NaN or the far future
        raise ParseError("timestamp in the future")
    if ts < MIN_TIMESTAMP:
        raise ParseError("timestamp before 2000")
    return ts


# --- URL, path, route -------------------------------------------------------------------------------------------

_ID_SEGMENTS = re.compile(  # whole path segments that are ids: numbers, UUIDs, long hex
    r"/(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{16,})(?=/|$)"
)
_SLASHES = re.compile(r"/{2,}")


@lru_cache(maxsize=65536)
def split_uri(uri: str) -> tuple[str, str]:
    """(path, route) of a request target: decoded path and its id-free template."""
    raw_path = uri.split("?", 1)[0]
    if "#" in raw_path:
        raw_path = raw_path.split("#", 1)[0]
    if raw_path.startswith(("http://", "https://")):  # absolute-form request target
        raw_path = "/" + raw_path.split("/", 3)[3] if raw_path.count("/") >= 3 else "/"
    path = raw_path
    if "%" in path:
        path = unquote(path, errors="replace")
        if "%" in path:
            path = unquote(path, errors="replace")
    if "//" in path:
        path = _SLASHES.sub("/", path)
    while "/./" in path:
        path = path.replace("/./", "/")
    if not path.startswith("/"):
        path = "/" + path
    return path, _ID_SEGMENTS.sub("/{id}", path)[:300]


def query_params(uri: str) -> dict[str, list[str]]:
    _, _, qs = uri.partition("?")
    params: dict[str, list[str]] = {}
    for name, value in parse_qsl(qs.partition("#")[0], keep_blank_values=True, errors="replace"):
        params.setdefault(name, []).append(value)
    return params


def decoded_uri(uri: str) -> str:
    """The whole target decoded twice and lower-cased, what payload classes are matched on."""
    text = unquote(uri.replace("+", " "), errors="replace")
    if "%" in text:
        text = unquote(text, errors="replace")
    return text.lower()


# --- user agents ------------------------------------------------------------------------------------------------

_SCANNERS = re.compile(
    r"sqlmap|nikto|nmap|masscan|zgrab|wpscan|dirbuster|gobuster|feroxbuster|nuclei|acunetix|netsparker|"
    r"w3af|havij|openvas|nessus|qualys|burp|zmeu|jaeles|ffuf|wfuzz|hydra|medusa|fimap|commix|arachni",
    re.IGNORECASE,
)
_CRAWLERS = re.compile(r"bot\b|bot/|crawler|spider|slurp|bingpreview|facebookexternalhit|archive\.org", re.I)
_TOOLS = re.compile(r"^(?:curl|wget|python-requests|python-urllib|go-http-client|okhttp|java/|libwww|httpie|"
                    r"axios|node-fetch|aiohttp|httpx|powershell|apache-httpclient)", re.IGNORECASE)


@lru_cache(maxsize=16384)
def ua_class(user_agent: str) -> str:
    if not user_agent or user_agent == "-":
        return "empty"
    if _SCANNERS.search(user_agent):
        return "scanner"
    if _CRAWLERS.search(user_agent):
        return "crawler"
    if _TOOLS.match(user_agent):
        return "tool"
    if user_agent.startswith("Mozilla/") or user_agent.startswith("Opera/"):
        return "browser"
    return "other"


# --- addresses --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=262144)
def normalise_ip(value: str) -> str | None:
    """The canonical text of an IP address, None when ``value`` is not one (brackets and ports stripped)."""
    text = value.strip()
    if not text or text == "-":
        return None
    if text.startswith("["):  # [v6]:port
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


@lru_cache(maxsize=262144)
def network_of(ip: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) holding ``ip``: a network without ASN data."""
    if ":" not in ip:
        return ip.rsplit(".", 1)[0] + ".0/24"
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


class ProxyTrust:
    """Which peers' ``X-Forwarded-For`` is believed: only those inside the configured proxy networks."""

    def __init__(self, cidrs: list[str] | tuple[str, ...]) -> None:
        self.networks = [ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip()]
        self._cache: dict[str, bool] = {}

    def trusted(self, ip: str) -> bool:
        known = self._cache.get(ip)
        if known is None:
            address = ipaddress.ip_address(ip)
            known = any(address in net for net in self.networks)
            if len(self._cache) > 100000:
                self._cache.clear()
            self._cache[ip] = known
        return known

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The address the request came from: walk ``X-Forwarded-For`` right to left past trusted proxies."""
        if peer is None or not forwarded_for or not self.networks or not self.trusted(peer):
            return peer
        current = peer
        for hop in reversed(forwarded_for.split(",")):
            ip = normalise_ip(hop)
            if ip is None:
                return current  # garbage in the header: stop at the last address we can vouch for
            current = ip
            if not self.trusted(ip):
                return ip
        return current


def enrich(event: LogEvent) -> LogEvent:
    """Fill path, route, user-agent class and network from the raw fields."""
    if event.uri:
        event.path, event.route = split_uri(event.uri)
    event.ua_class = ua_class(event.user_agent)
    if event.client_ip:
        event.network = network_of(event.client_ip)
    return event
